"""Test-only: stop `healthpipe archive compact` at a named moment so a test can kill -9 it there.

HP_TEST_COMPACT_PAUSE = reading | before_commit | after_commit, HP_TEST_COMPACT_SIGNAL = a file created when the
moment is reached; the process then sleeps (for the test's kill), or, with HP_TEST_COMPACT_RESUME = a file, goes on
once that file exists. Put on PYTHONPATH by
tests/integration/test_archive_iceberg.py only.
"""

import os
import pathlib
import time

MOMENT = os.environ.get("HP_TEST_COMPACT_PAUSE")


def _pause(moment: str) -> None:
    if moment == MOMENT:
        pathlib.Path(os.environ["HP_TEST_COMPACT_SIGNAL"]).write_text(moment)
        resume = os.environ.get("HP_TEST_COMPACT_RESUME")
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not (resume and os.path.exists(resume)):
            time.sleep(0.05)


if MOMENT:
    from healthpipe.sinks.archive import compact, iceberg

    _read, _replace = compact.pq.read_table, iceberg.IcebergTable.replace

    def read_table(*args, **kwargs):
        table = _read(*args, **kwargs)
        _pause("reading")
        return table

    def replace(self, *args, **kwargs):
        _pause("before_commit")
        snapshot = _replace(self, *args, **kwargs)
        _pause("after_commit")
        return snapshot

    compact.pq.read_table = read_table  # the module's pq: the pyarrow.parquet module itself, patched for this process
    iceberg.IcebergTable.replace = replace
