"""The cold tier as an Iceberg table (`archive.format: iceberg`) against the real stack: a known ledger in, exactly
the ledger out through pyiceberg, on a local directory and on the stack's S3 server (SeaweedFS); each snapshot
records the Kafka offsets it covers; an archiver whose snapshot went in but whose offsets did not resumes from the
table, not from the group."""

from __future__ import annotations

import pyarrow as pa
import pytest

from healthpipe.common.kafka import ensure_topics
from healthpipe.sinks.archive.iceberg import IcebergTable
from healthpipe.sinks.archive.service import archiver
from healthpipe.sinks.archive.store import Store
from tests.chaos.ledger import generate
from tests.integration.test_archive import archive_config, truth
from tests.support import kafka
from tests.support.pipeline import ConsumerThread, committed_all, wait_until


def iceberg_config(services, target, tmp_path, **archive):
    # the catalog: a SQLite file of this test's own (on S3 the table's files are in the bucket, the catalog here)
    return archive_config(services, target, tmp_path, format="iceberg",
                          iceberg={"catalog_uri": f"sqlite:///{tmp_path / 'catalog.db'}"}, **archive)


def table_of(cfg) -> IcebergTable:
    return IcebergTable(cfg.archive, Store(cfg.archive))


def rows(table: pa.Table) -> list[tuple]:
    return [(dict(labels)["instance"], round(ts.timestamp() * 1000), value) for labels, ts, value in
            zip(table["labels"].to_pylist(), table["ts"].to_pylist(), table["value"].to_pylist(), strict=True)]


def archived(cfg, snapshot_id=None) -> set:
    got = rows(table_of(cfg).read(["ts", "value", "labels"], snapshot_id=snapshot_id))
    keys = [(i, ts) for i, ts, _ in got]
    assert len(keys) == len(set(keys)), f"{len(keys) - len(set(keys))} duplicate rows"
    return set(got)


@pytest.mark.parametrize("target", ["local", "s3"])
def test_a_known_ledger_is_an_iceberg_table_exactly(services, tmp_path, target):
    cfg = iceberg_config(services, target, tmp_path)
    ensure_topics(cfg)
    ledger = generate(51, 30, 1000, per_message=100)
    kafka.produce(cfg, cfg.kafka.topic, ledger.messages)
    replica = ConsumerThread(cfg, service=archiver(cfg))
    wait_until(lambda: committed_all(cfg, cfg.archive.group_id), 120, what="the archive group to commit everything")
    replica.stop()
    assert archived(cfg) == truth(ledger)
    table = table_of(cfg)
    # the newest snapshot records exactly the offsets the group committed
    committed = kafka.committed_offsets(cfg, cfg.archive.group_id, cfg.kafka.topic)
    recorded = table.offsets(cfg.archive.group_id)
    assert recorded and recorded == {(cfg.kafka.topic, p): o for p, o in committed.items() if o >= 0}
    # the files are the archiver's own: under the table's data/ts_day=... folders, named by their offsets
    parts = list(table.partitions())
    assert parts and all(p.day.startswith("ts_day=") for p in parts)
    assert all("/data/ts_day=" in f.file_path and f"{cfg.kafka.topic}+" in f.file_path for p in parts for f in p.files)
    assert sum(p.rows for p in parts) == len(ledger.truth)
    schema = table.table().schema()
    assert [f.name for f in schema.fields] == ["ts", "value", "metric", "query", "metric_type", "series", "labels"]
    assert str(table.table().spec().fields[0].transform) == "day"
    assert replica.metric("healthpipe_archive_snapshots_total") >= 1


def test_an_archiver_whose_offsets_were_not_committed_resumes_from_the_table(services, tmp_path):
    """The crash between a snapshot's commit and the offsets' commit, made exact: the snapshots are in the table,
    then the group's offsets are put back to where they were before (as if the process died before committing).
    A new archiver re-reads those records; it must skip every one (the table says it holds them) and commit the
    table's offsets: no row twice, no new snapshot. Two defences stand in the way (the skip on reading, and the
    commit leaving out ranges the table holds); with both gone (mutant iceberg_resumes_from_the_group) the ranges
    are cut and committed again, and only pyiceberg's refusal of files the table already names stops a re-cut that
    happens to give the same names (a different cut would not be stopped). The count of skipped records catches
    the skip gone, whichever defence is left."""
    cfg = iceberg_config(services, "local", tmp_path)
    ensure_topics(cfg)
    ledger = generate(52, 20, 1000, per_message=100)
    kafka.produce(cfg, cfg.kafka.topic, ledger.messages)
    first = ConsumerThread(cfg, service=archiver(cfg))
    wait_until(lambda: committed_all(cfg, cfg.archive.group_id), 120, what="the archive group to commit everything")
    first.stop()
    snapshot = table_of(cfg).snapshot_id()
    assert archived(cfg) == truth(ledger)
    # the group forgets: its offsets go back to the start, the table keeps what it has
    kafka.reset_offsets(cfg, cfg.archive.group_id, cfg.kafka.topic, 0)
    assert all(o <= 0 for o in kafka.committed_offsets(cfg, cfg.archive.group_id, cfg.kafka.topic).values())
    second = ConsumerThread(cfg, service=archiver(cfg))
    wait_until(lambda: committed_all(cfg, cfg.archive.group_id), 120, what="the group to commit the table's offsets")
    second.stop()
    assert table_of(cfg).snapshot_id() == snapshot  # nothing new was committed
    assert archived(cfg) == truth(ledger)
    assert second.metric("healthpipe_archive_records_skipped_total") == len(ledger.messages)
