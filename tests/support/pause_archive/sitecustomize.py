"""Test-only: stop the Iceberg archiver right after its first snapshot commit, before the offsets are committed,
so a test can kill -9 it in exactly that gap.

HP_TEST_ARCHIVE_PAUSE_SIGNAL = a file created once the snapshot is in; the process then sleeps (for the kill).
Put on PYTHONPATH by tests/chaos/test_archive_faults.py only.
"""

import os
import pathlib
import time

SIGNAL = os.environ.get("HP_TEST_ARCHIVE_PAUSE_SIGNAL")

if SIGNAL:
    from healthpipe.sinks.archive import iceberg

    _append = iceberg.IcebergTable.append

    def append(self, *args, **kwargs):
        snapshot = _append(self, *args, **kwargs)
        if snapshot is not None:
            pathlib.Path(SIGNAL).write_text(str(snapshot))
            time.sleep(600)
        return snapshot

    iceberg.IcebergTable.append = append
