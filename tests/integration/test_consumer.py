"""Consumer group against the real stack: exact points, exact drops, dead letters, replicas, crashes."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest
from influxdb_client.client.write_api import SYNCHRONOUS

from healthpipe.common.kafka import ensure_topics
from healthpipe.common.messages import SeriesWindow, headers
from tests.support import influx, kafka
from tests.support.faults import FaultProxy
from tests.support.pipeline import (
    ConsumerThread,
    committed_all,
    consume_to_the_end,
    kill_9_with_work_in_flight,
    series_messages,
    wait_until,
    write_config,
)

NOW_MS = int(time.time() * 1000) - 3_600_000  # an hour ago: inside every retention, never "future"


def loaded(cfg, run: str, start: str = "0") -> set[tuple[str, int, float]]:
    return influx.run_points(cfg.load.influxdb, run, start)


def fast(services, **overrides):
    consumer = {"batch_max_age_seconds": 0.5, **overrides.pop("consumer", {})}
    cfg = services.config(consumer=consumer, **overrides)
    ensure_topics(cfg)
    return cfg


def test_known_messages_become_exactly_the_expected_points_and_drops(services):
    cfg = fast(services)
    run = uuid.uuid4().hex
    t = NOW_MS
    base = {"__name__": "up", "job": "test-app", "run": run}
    windows = [
        SeriesWindow("availability", "availability", {**base, "instance": "a"}, t - 1, t + 10,
                     [(t, "1"), (t + 1, "NaN"), (t + 2, "+Inf"), (t + 3, "-Inf"), (t + 4, "0")]),
        # a re-delivered window: its samples are duplicates within the batch
        SeriesWindow("availability", "availability", {**base, "instance": "a"}, t - 1, t + 10, [(t, "1")]),
        SeriesWindow("availability", "availability", {**base, "instance": "b"}, t - 1, t + 10,
                     [(0, "1"), (-5, "1"), (t + 10**11, "1"), (t + 5, "2.5")]),
        SeriesWindow("q", "gauge", {"__name__": "not_on_the_whitelist", "run": run, "instance": "c"}, t - 1, t + 10,
                     [(t, "1"), (t + 1, "2")]),
        # tricky label values must come back exactly, and not add tags or points
        SeriesWindow("availability", "availability",
                     {**base, "instance": "d", "path": 'a b,c=d"e\\f ünï ✓'}, t - 1, t + 10, [(t, "7")]),
    ]
    kafka.produce(cfg, cfg.kafka.topic, [(w.key, w.to_json(), headers()) for w in windows])
    replica = ConsumerThread(cfg, until_idle=3)
    replica.join()
    assert loaded(cfg, run) == {("a", t, 1.0), ("a", t + 4, 0.0), ("b", t + 5, 2.5), ("d", t, 7.0)}
    tricky = influx.points(cfg.load.influxdb, f'r.run == "{run}" and r.instance == "d"')
    assert len(tricky) == 1 and tricky[0]["path"] == 'a b,c=d"e\\f ünï ✓'
    assert set(tricky[0]) - {"result", "table", "_start", "_stop", "_time", "_value", "_field", "_measurement"} == {
        "instance", "job", "metric", "metric_type", "path", "run", "service"}
    dropped = {r: replica.metric("healthpipe_consumer_samples_dropped_total", {"reason": r})
               for r in ("nan", "inf", "duplicate", "bad_timestamp", "future_timestamp", "metric_not_allowed")}
    assert dropped == {"nan": 1, "inf": 2, "duplicate": 1, "bad_timestamp": 2, "future_timestamp": 1,
                       "metric_not_allowed": 2}
    assert replica.metric("healthpipe_consumer_samples_written_total") == 4
    assert committed_all(cfg)


def test_garbage_goes_to_the_dead_letter_topic_and_the_partition_keeps_moving(services):
    cfg = fast(services, kafka={"partitions": 1}, consumer={"max_message_bytes": 100_000})
    run = uuid.uuid4().hex
    good_before, expected_before = series_messages(run, 1, 5, NOW_MS)
    good_after, expected_after = series_messages(run, 1, 5, NOW_MS + 10_000)
    garbage = [
        (b"k1", b"\x00\x01 not json at all", None),
        (b"k2", b'{"v": 1, "query": "trunc', None),
        (b"k3", orjson.dumps({"v": 2, "query": "q"}), [("healthpipe-schema", b"2")]),
        (b"k4", orjson.dumps({"v": 1, "query": "q"}), None),
        (b"k5", b'{"v":1,"pad":"' + b"x" * 200_000 + b'"}', None),
        (b"k6", None, None),
    ]
    kafka.produce(cfg, cfg.kafka.topic, good_before + garbage + good_after)
    replica = ConsumerThread(cfg, until_idle=3)
    replica.join()
    assert loaded(cfg, run) == expected_before | expected_after
    letters = kafka.read_topic(cfg, cfg.kafka.dead_letter_topic)
    reasons = {m.key(): dict(m.headers())["healthpipe-dlq-reason"].decode() for m in letters}
    assert reasons == {b"k1": "not_json", b"k2": "not_json", b"k3": "unknown_version", b"k4": "missing_fields",
                       b"k5": "oversized", b"k6": "empty"}
    original = {m.key(): m.value() for m in letters}
    assert original[b"k1"] == b"\x00\x01 not json at all"  # the original bytes, untouched
    offsets = {m.key(): int(dict(m.headers())["healthpipe-dlq-source-offset"]) for m in letters}
    assert sorted(offsets.values()) == list(range(len(good_before), len(good_before) + len(garbage)))
    assert committed_all(cfg)


def test_two_replicas_share_the_partitions_and_load_every_point_once(services):
    cfg = fast(services)
    run = uuid.uuid4().hex
    messages, expected = series_messages(run, 24, 200, NOW_MS)
    a, b = ConsumerThread(cfg), ConsumerThread(cfg)
    wait_until(lambda: a.service.assigned and b.service.assigned and
               len(a.service.assigned) + len(b.service.assigned) == cfg.kafka.partitions, 60,
               what="both replicas to own partitions")
    kafka.produce(cfg, cfg.kafka.topic, messages)
    wait_until(lambda: committed_all(cfg), 120, what="all offsets committed")
    a.stop()
    b.stop()
    assert loaded(cfg, run) == expected
    written = [r.metric("healthpipe_consumer_samples_written_total") for r in (a, b)]
    assert sum(written) >= len(expected) and all(w > 0 for w in written), written
    assert committed_all(cfg)


def test_kill_9_mid_batch_then_restart_loses_nothing(services, tmp_path):
    """Three kills, each proven to hit uncommitted work (writes slowed to 0.2 s so work stays in flight)."""
    proxy = FaultProxy(services.influx_url)
    proxy.fail_path_prefix, proxy.delay = "/api/v2/write", 0.2
    try:
        cfg = fast(services, influxdb={"batch_size": 500, "url": proxy.url})
        run = uuid.uuid4().hex
        messages, expected = series_messages(run, 100, 1000, NOW_MS, step_ms=10)
        kafka.produce(cfg, cfg.kafka.topic, messages)
        log = tmp_path / "consumer.log"
        evidence = kill_9_with_work_in_flight(cfg, tmp_path, log, (0.5, 1.0, 2.0))
        assert all(m["healthpipe_consumer_uncommitted_messages"] > 0 for m in evidence)
        proxy.delay = 0.0
        consume_to_the_end(write_config(cfg, tmp_path / "c.yaml"), cfg, log)
        assert loaded(cfg, run) == expected
        assert committed_all(cfg)
    finally:
        proxy.close()


@pytest.fixture
def scratch_bucket(services):
    with influx.temporary_bucket(fast(services).load.influxdb) as settings:
        yield settings


def test_points_influxdb_rejects_are_dead_lettered_with_status(services, scratch_bucket):
    """A field-type conflict (a string `value` already stored in that shard) makes InfluxDB refuse a point."""
    settings, bucket = scratch_bucket, scratch_bucket.bucket
    old_ms = 946_684_800_000  # 2000-01-01: a shard of its own
    with influx.client(settings) as c:
        c.write_api(write_options=SYNCHRONOUS).write(bucket, settings.org, 'health_metrics,x=1 value="a string" '
                                                     f"{old_ms}", write_precision="ms")
    cfg = fast(services, influxdb={"bucket": bucket}, kafka={"partitions": 1})
    run = uuid.uuid4().hex
    messages, expected = series_messages(run, 2, 50, NOW_MS)
    bad = SeriesWindow("availability", "availability", {"__name__": "up", "run": run, "instance": "old"},
                       old_ms - 1, old_ms, [(old_ms, "1")])
    kafka.produce(cfg, cfg.kafka.topic, [*messages[:1], (bad.key, bad.to_json(), headers()), *messages[1:]])
    replica = ConsumerThread(cfg, until_idle=3)
    replica.join()
    assert loaded(cfg, run, start="-1d") == expected  # (a range over both shards would mix field types)
    letters = kafka.read_topic(cfg, cfg.kafka.dead_letter_topic)
    assert len(letters) == 1
    h = dict(letters[0].headers())
    assert h["healthpipe-dlq-reason"] == b"influx_rejected"
    assert h["healthpipe-dlq-error-status"] in (b"400", b"422")
    assert b"conflict" in h["healthpipe-dlq-detail"]
    assert letters[0].value().endswith(f" value=1.0 {old_ms}".encode())
    assert committed_all(cfg)


def test_influxdb_down_for_30s_pauses_without_committing_then_drains(services):
    """Stops the stack's real InfluxDB process: the consumer must hold, stay in its group, then catch up."""
    if not services.native:
        pytest.skip("needs the native stack to stop and start InfluxDB")
    from healthpipe.ops import stack

    cfg = fast(services, kafka={"partitions": 2})
    run = uuid.uuid4().hex
    first, expected_first = series_messages(run, 10, 100, NOW_MS)
    second, expected_second = series_messages(run, 10, 100, NOW_MS + 1_000_000)
    replica = ConsumerThread(cfg)
    influxdb = stack.service("influxdb")
    try:
        kafka.produce(cfg, cfg.kafka.topic, first)
        wait_until(lambda: committed_all(cfg), 60, what="first half committed")
        before = kafka.committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic)
        stack.stop(influxdb)
        kafka.produce(cfg, cfg.kafka.topic, second)
        time.sleep(3)  # (a write InfluxDB acknowledged while shutting down may still commit)
        time.sleep(30)
        assert kafka.committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic) == before  # nothing past unwritten
        assert replica.metric("healthpipe_consumer_paused") == 1
        assert replica.metric("healthpipe_consumer_rebalances_total", {"kind": "revoke"}) == 0
        assert len(replica.service.assigned) == 2  # still in the group, still owning its partitions
    finally:
        stack.start(influxdb)
    wait_until(lambda: committed_all(cfg), 120, what="the held batch and the backlog to drain")
    replica.stop()
    assert loaded(cfg, run) == expected_first | expected_second
    assert replica.metric("healthpipe_consumer_paused") == 0


def test_loader_test_connection_checks_the_bucket(services):
    from healthpipe.sinks.influx.loader import InfluxDBLoader

    cfg = services.config()
    assert InfluxDBLoader(cfg.load.influxdb).test_connection() is True
    missing = cfg.load.influxdb.model_copy(update={"bucket": "no-such-bucket"})
    assert InfluxDBLoader(missing).test_connection() is False
    assert InfluxDBLoader(cfg.load.influxdb.model_copy(update={"url": "http://127.0.0.1:9"})).test_connection() is False
