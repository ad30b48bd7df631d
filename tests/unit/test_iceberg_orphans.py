"""Orphan files of the Iceberg cold tier (healthpipe/sinks/archive/orphans.py) on a real pyiceberg table in a local
folder (SQLite catalog): what a killed writer or a killed expiry leaves goes, every file a kept snapshot or a kept
metadata file reaches stays, and so does a file too new to be judged (one about to be committed)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from healthpipe.common.config import HealthpipeConfig
from healthpipe.sinks.archive.compact import compact
from healthpipe.sinks.archive.expire import expire
from healthpipe.sinks.archive.files import encode
from healthpipe.sinks.archive.iceberg import IcebergTable
from healthpipe.sinks.archive.orphans import find, remove_orphans
from tests.support.pipeline import write_config
from tests.unit.test_iceberg_expire import rows, table  # noqa: F401 (the 8-commit table fixture)

DAY = 86400


def age_everything(iceberg: IcebergTable, days: float) -> None:
    """Every file under the table's folder as if last written `days` ago."""
    then = time.time() - days * DAY
    for rel, _ in iceberg.store.list(iceberg.rel):
        os.utime(f"{iceberg.store.root}/{rel}", (then, then))


def every_snapshot_reads(iceberg: IcebergTable) -> list[int]:
    t = iceberg.table(refresh=True)
    return [iceberg.read(["series"], snapshot_id=s.snapshot_id).num_rows for s in t.metadata.snapshots]


def test_only_unreached_files_old_enough_go_and_every_snapshot_still_reads(table):  # noqa: F811
    killed = f"{table.rel}/data/ts_day=2026-12-01/t+0+00000000000000000080+00000000000000000089.parquet"
    table.store.put(killed, encode(rows(table, 9), store_schema=False))  # written, never committed
    age_everything(table, 4)  # the table's own files as old as the orphan: age alone decides nothing
    in_flight = f"{table.rel}/data/ts_day=2026-12-01/t+0+00000000000000000090+00000000000000000099.parquet"
    table.store.put(in_flight, encode(rows(table, 10), store_schema=False))  # about to be committed
    before = every_snapshot_reads(table)
    listed = {rel for rel, _ in table.store.list(table.rel)}

    dry = remove_orphans(table, 3 * DAY, dry_run=True)
    assert dry.files == [killed] and not dry.deleted
    assert {rel for rel, _ in table.store.list(table.rel)} == listed  # a dry run deletes nothing

    done = remove_orphans(table, 3 * DAY)
    assert done.files == [killed] and done.deleted and done.bytes > 0
    assert {rel for rel, _ in table.store.list(table.rel)} == listed - {killed}  # the in-flight file stays
    assert every_snapshot_reads(table) == before == [10 * (i + 1) for i in range(8)]
    assert find(table, 3 * DAY).files == []


def test_the_files_a_kill_left_between_expiry_and_deletion_are_found_exactly(table, monkeypatch):  # noqa: F811
    compact(table, None, 1000)
    with monkeypatch.context() as m:
        m.setattr(table.store, "delete", lambda rel: None)  # killed after the expiry's commit, before deleting
        expired = expire(table, 1)
    assert expired.files_deleted == 24  # the 8 replaced data files, and 8 manifest lists and manifests
    age_everything(table, 4)
    found = remove_orphans(table, 3 * DAY)
    assert len(found.files) == expired.files_deleted
    assert table.read(["series"]).num_rows == 40  # the compacted rows, whole
    assert [rel.rsplit("/", 1)[-1].split("-")[0] for rel, _ in table.store.list(f"{table.rel}/data")] == ["compacted"]


def test_remove_orphans_refuses_a_short_age_and_the_hive_layout_exit_2(tmp_path):
    with pytest.raises(ValueError, match="at least 3600"):
        remove_orphans(None, 600)  # type: ignore[arg-type]  # refused before the table is opened

    def run(cfg, *args: str) -> subprocess.CompletedProcess:
        config = write_config(cfg, tmp_path / "c.yaml")
        return subprocess.run([sys.executable, "-m", "healthpipe", "archive", "remove-orphans", "--config",
                               str(config), *args], capture_output=True, text=True, timeout=60)

    done = run(HealthpipeConfig(archive={"target": str(tmp_path / "a")}))
    assert done.returncode == 2 and "needs archive.format: iceberg" in done.stderr, done.stderr
    iceberg = HealthpipeConfig(archive={"target": str(tmp_path / "a"), "format": "iceberg"})
    done = run(iceberg, "--older-than", "10m")
    assert done.returncode == 2 and "at least 3600" in done.stderr, done.stderr
    done = run(iceberg, "--older-than", "soon")
    assert done.returncode == 2 and "--older-than" in done.stderr, done.stderr
    done = run(iceberg, "--json")
    assert done.returncode == 0 and '"files": []' in done.stdout, done.stderr


def test_opening_the_table_again_writes_nothing(table):  # noqa: F811
    """Every process that opens the table (an archiver restart, each `archive` command) loads it; creating it
    anew would write a first metadata file the catalog then refuses, an orphan at every start."""
    listed = {rel for rel, _ in table.store.list(table.rel)}
    for _ in range(3):
        again = IcebergTable(table.settings, table.store)
        assert again.table().metadata_location == table.table(refresh=True).metadata_location
    assert {rel for rel, _ in table.store.list(table.rel)} == listed
    assert find(table, 0, now=time.time() + DAY).files == []
