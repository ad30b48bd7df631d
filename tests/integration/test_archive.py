"""The archive (cold tier) against the real stack: a known ledger in, exactly the ledger out, read back with
pyarrow, pandas and DuckDB; on a local directory and on the stack's S3 server (SeaweedFS)."""

from __future__ import annotations

import uuid

import pyarrow.dataset as ds
import pytest

from healthpipe.common.kafka import ensure_topics
from healthpipe.sinks.archive import layout
from healthpipe.sinks.archive.service import archiver
from healthpipe.sinks.archive.store import Store
from tests.chaos.ledger import generate
from tests.support import kafka
from tests.support.pipeline import ConsumerProcess, ConsumerThread, committed_all, holds_uncommitted_work, wait_until


def archive_config(services, target: str, tmp_path, consumer: dict | None = None, **archive):
    extra = {"target": target if target != "local" else str(tmp_path / "archive"), "max_file_rows": 7000,
             "max_file_age_seconds": 2, **archive}
    if target == "s3":
        if not services.s3:
            pytest.skip("no S3 server in the stack (make stack-up starts one)")
        extra["s3"] = {**services.s3, "prefix": f"test-{uuid.uuid4().hex[:10]}"}  # empty for every run
    return services.config(archive=extra, consumer=consumer or {})


def read(store: Store):
    """The whole archive as one table (hive partitions date/hour become columns)."""
    return ds.dataset(store.root, filesystem=store.fs, format="parquet", partitioning="hive").to_table()


def archived(cfg, ledger) -> set:
    table = read(Store(cfg.archive))
    rows = list(zip(table["labels"].to_pylist(), table["ts"].to_pylist(), table["value"].to_pylist(), strict=True))
    keys = [(dict(labels)["instance"], int(ts.timestamp() * 1000)) for labels, ts, _ in rows]
    assert len(keys) == len(set(keys)), f"{len(keys) - len(set(keys))} duplicate rows"
    return {(dict(labels)["instance"], round(ts.timestamp() * 1000), value) for labels, ts, value in rows}


def truth(ledger) -> set:
    return {(dict(p[1])["instance"], p[4], p[3]) for p in ledger.truth}


@pytest.mark.parametrize("target", ["local", "s3"])
def test_a_known_ledger_is_archived_exactly(services, tmp_path, target):
    cfg = archive_config(services, target, tmp_path)
    ensure_topics(cfg)
    ledger = generate(31, 30, 1000, per_message=100)
    kafka.produce(cfg, cfg.kafka.topic, ledger.messages)
    replica = ConsumerThread(cfg, service=archiver(cfg))
    wait_until(lambda: committed_all(cfg, cfg.archive.group_id), 120, what="the archive group to commit everything")
    replica.stop()
    assert archived(cfg, ledger) == truth(ledger)
    store = Store(cfg.archive)
    files = [layout.parse(p) for p, _ in store.list() if p.endswith(".parquet")]
    assert files and all(files)  # every file named (topic, partition, first, last) under date=/hour=
    assert not [p for p, _ in store.list() if "/.tmp-" in p]
    table = read(store)
    assert str(table.schema.field("ts").type) == "timestamp[ms, tz=UTC]"
    assert set(table.column_names) >= {"ts", "value", "metric", "query", "metric_type", "series", "labels",
                                       "date", "hour"}
    row = table.slice(0, 1).to_pylist()[0]
    assert (row["metric"], row["query"], row["metric_type"]) == ("up", "availability", "availability")
    assert dict(row["labels"])["run"] == ledger.run and len(row["series"]) == 16


def test_nan_and_infinities_are_kept_and_bad_timestamps_counted(services, tmp_path):
    from healthpipe.common.messages import SeriesWindow, headers

    cfg = archive_config(services, "local", tmp_path)
    ensure_topics(cfg)
    w = SeriesWindow("q", "gauge", {"__name__": "m", "instance": "i"}, 0, 10,
                     [(1_700_000_000_000, "NaN"), (1_700_000_001_000, "+Inf"), (1_700_000_002_000, "-Inf"),
                      (1_700_000_003_000, "0.5"), (-5, "1")])
    kafka.produce(cfg, cfg.kafka.topic, [(w.key, w.to_json(), headers())])
    replica = ConsumerThread(cfg, service=archiver(cfg), until_idle=3)
    replica.join()
    values = read(Store(cfg.archive)).sort_by("ts")["value"].to_pylist()
    assert str(values[:3]) == "[nan, inf, -inf]" and values[3] == 0.5 and len(values) == 4
    assert replica.metric("healthpipe_consumer_samples_dropped_total", {"reason": "bad_timestamp"}) == 1


def test_sigterm_seals_and_commits_the_open_ranges(services, tmp_path):
    """An archive stopped with SIGTERM before its files reach max_file_age_seconds seals its open ranges, writes
    them and commits them within the grace period. Before the fix close() flushed only an open or in-flight batch,
    never the sink's open ranges: no file, nothing committed, and every restart re-read the whole topic.

    The stop must hit work in flight: before SIGTERM, every sample was consumed (written into open ranges) and
    nothing is committed nor on disk. Checked against the old close() (`if (self.batch or self.checkpoint)`): no
    file, nothing committed, this test fails."""
    cfg = archive_config(services, "local", tmp_path, max_file_rows=1_000_000, max_file_age_seconds=3600)
    ensure_topics(cfg)
    ledger = generate(41, 20, 1000, per_message=100)
    kafka.produce(cfg, cfg.kafka.topic, ledger.messages)
    replica = ConsumerProcess(cfg, tmp_path, tmp_path / "archive.log", kind="archive")
    at_stop = replica.wait_for("every sample read into open ranges", lambda m: m.get(
        "healthpipe_consumer_samples_consumed_total", 0) >= len(ledger.truth))
    assert holds_uncommitted_work(at_stop), at_stop
    assert all(o < 0 for o in kafka.committed_offsets(cfg, cfg.archive.group_id, cfg.kafka.topic).values())
    assert not [p for p, _ in Store(cfg.archive).list() if p.endswith(".parquet")]  # nothing written yet
    assert replica.terminate(timeout=60) == 0  # within the process's 20 s grace, plus its start and exit
    assert committed_all(cfg, cfg.archive.group_id)
    assert archived(cfg, ledger) == truth(ledger)


def test_two_replicas_and_a_rebalance_in_the_middle_archive_every_row_once(services, tmp_path):
    """Replica A holds open ranges (consumed, uncommitted, younger than max_file_age_seconds) when replica B joins:
    the cooperative rebalance revokes some of A's partitions, and A must seal and commit what it holds of them
    before B reads them from the group's commit. Both then stop, and the archive is exactly the ledger, no row
    twice. Checked against the old revoke, which returned early when no batch was open: A kept the revoked
    partitions' open ranges, sealed them at shutdown over offsets B had archived too, and rows came out twice."""
    cfg = archive_config(services, "local", tmp_path, max_file_rows=1_000_000, max_file_age_seconds=3600)
    ensure_topics(cfg)
    ledger = generate(42, 30, 1000, per_message=100)
    half = len(ledger.messages) // 2
    kafka.produce(cfg, cfg.kafka.topic, ledger.messages[:half])
    a = ConsumerThread(cfg, service=archiver(cfg))
    wait_until(lambda: a.metric("healthpipe_consumer_messages_consumed_total") >= half, 60, what="A to read half")
    assert a.metric("healthpipe_consumer_uncommitted_messages") > 0  # open ranges: work in flight at the rebalance
    b = ConsumerThread(cfg, service=archiver(cfg))
    wait_until(lambda: a.metric("healthpipe_consumer_rebalances_total", {"kind": "revoke"}) >= 1
               and b.metric("healthpipe_consumer_rebalances_total", {"kind": "assign"}) >= 1, 60,
               what="B to join and A to hand partitions over")
    kafka.produce(cfg, cfg.kafka.topic, ledger.messages[half:])
    wait_until(lambda: a.metric("healthpipe_consumer_messages_consumed_total")
               + b.metric("healthpipe_consumer_messages_consumed_total") >= len(ledger.messages), 120,
               what="every message read by one of them")
    a.stop()
    b.stop()
    assert committed_all(cfg, cfg.archive.group_id)
    assert archived(cfg, ledger) == truth(ledger)  # archived() fails on any duplicate row
