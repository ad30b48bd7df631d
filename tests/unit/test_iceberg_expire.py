"""Snapshot expiry of the Iceberg cold tier (healthpipe/sinks/archive/expire.py) on a real pyiceberg table in a
local folder (SQLite catalog): no Kafka, no S3. The archiver's own path, against the stack and on S3:
tests/integration/test_archive_iceberg.py::test_expiry_..."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pyarrow as pa
import pytest

from healthpipe.common.config import ArchiveSettings, HealthpipeConfig
from healthpipe.sinks.archive.compact import compact
from healthpipe.sinks.archive.expire import expire
from healthpipe.sinks.archive.files import encode
from healthpipe.sinks.archive.iceberg import IcebergTable, RangeFiles
from healthpipe.sinks.archive.store import Store
from tests.support.pipeline import write_config


def rows(table: IcebergTable, series: int) -> pa.Table:
    """10 samples of one series, in the table's own schema."""
    start = dt.datetime(2026, 12, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=series * 10)
    return pa.table({
        "ts": pa.array([start + dt.timedelta(seconds=k) for k in range(10)], pa.timestamp("us", tz="UTC")),
        "value": pa.array([float(k) for k in range(10)]), "metric": ["m"] * 10, "query": ["q"] * 10,
        "metric_type": ["gauge"] * 10, "series": [f"s{series}"] * 10,
        "labels": pa.array([[("instance", f"i{series}")]] * 10, pa.map_(pa.string(), pa.string())),
    }).cast(table.table().schema().as_arrow())


@pytest.fixture
def table(tmp_path) -> IcebergTable:
    """8 archiver commits, each one range's file; series 0-3 twice over (a replay), so compaction has work."""
    settings = ArchiveSettings(target=str(tmp_path / "archive"), format="iceberg",
                               iceberg={"catalog_uri": f"sqlite:///{tmp_path / 'catalog.db'}"})
    iceberg = IcebergTable(settings, Store(settings))
    for i in range(8):
        rel = f"{iceberg.rel}/data/ts_day=2026-12-01/t+0+{i * 10:020d}+{i * 10 + 9:020d}.parquet"
        iceberg.store.put(rel, encode(rows(iceberg, i % 4), store_schema=False))
        iceberg.append("g", [RangeFiles(("t", 0), i * 10, i * 10 + 9, [rel])])
    return iceberg


def data_files(iceberg: IcebergTable) -> list[str]:
    return sorted(rel.rsplit("/", 1)[-1] for rel, _ in iceberg.store.list(f"{iceberg.rel}/data"))


def test_expiry_after_compaction_deletes_the_replaced_files_and_keeps_rows_and_offsets(table):
    (done,) = compact(table, None, 1000)
    assert done.duplicates_removed == 40
    assert len(data_files(table)) == 9  # the 8 replaced files stay while the snapshots before compaction do
    before = table.offsets("g")
    result = expire(table, 1)
    assert (result.snapshots_expired, result.snapshots_kept) == (8, 1)
    assert [f.split("-")[0] for f in data_files(table)] == ["compacted"]  # each replaced file deleted, nothing else
    assert table.read(["series"]).num_rows == 40
    assert table.offsets("g") == before == {("t", 0): 80}  # the archiver resumes from the kept snapshot
    manifests = {rel for rel, _ in table.store.list(f"{table.rel}/metadata") if rel.endswith(".avro")}
    reached = {m.manifest_path.split("/metadata/")[1] for m in table.table().current_snapshot().manifests(
        table.table().io)} | {table.table().current_snapshot().manifest_list.split("/metadata/")[1]}
    assert {m.split("/metadata/")[1] for m in manifests} == reached  # no manifest of an expired snapshot left


def test_expiry_keeps_the_newest_and_does_nothing_when_within_the_bound(table):
    assert expire(table, 8).snapshots_expired == 0
    result = expire(table, 5)
    assert (result.snapshots_expired, result.snapshots_kept, result.files_deleted) == (3, 5, 3)  # 3 manifest lists
    assert len(data_files(table)) == 8  # every data file is still live: no snapshot removed one
    assert table.read(["series"]).num_rows == 80
    props = table.table().properties
    assert props["write.metadata.delete-after-commit.enabled"] == "true"  # metadata files bounded too
    assert props["commit.manifest-merge.enabled"] == "true"


def test_archive_expire_exits_2_naming_the_cause(tmp_path):
    def run(cfg, *args: str) -> subprocess.CompletedProcess:
        config = write_config(cfg, tmp_path / "c.yaml")
        return subprocess.run([sys.executable, "-m", "healthpipe", "archive", "expire", "--config", str(config),
                               *args], capture_output=True, text=True, timeout=60)

    hive = HealthpipeConfig(archive={"target": str(tmp_path / "a")})
    done = run(hive)
    assert done.returncode == 2 and "needs archive.format: iceberg" in done.stderr, done.stderr
    iceberg = HealthpipeConfig(archive={"target": str(tmp_path / "a"), "format": "iceberg"})
    done = run(iceberg, "--keep", "0")
    assert done.returncode == 2 and "--keep 0" in done.stderr, done.stderr


def test_a_table_made_before_the_metadata_bounds_gets_them_when_opened(tmp_path, monkeypatch):
    from healthpipe.sinks.archive import iceberg as module

    settings = ArchiveSettings(target=str(tmp_path / "archive"), format="iceberg",
                               iceberg={"catalog_uri": f"sqlite:///{tmp_path / 'catalog.db'}"})
    with monkeypatch.context() as m:
        m.setattr(module, "BOUNDED_METADATA", {})  # the table as an older healthpipe made it
        old = IcebergTable(settings, Store(settings)).table()
    assert "write.metadata.delete-after-commit.enabled" not in old.properties
    opened = IcebergTable(settings, Store(settings)).table()
    assert {k: opened.properties.get(k) for k in module.BOUNDED_METADATA} == module.BOUNDED_METADATA
