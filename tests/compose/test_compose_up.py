"""`docker compose up` for real: data flows and `healthpipe verify` (in the image) finds InfluxDB equal to
Prometheus; that stays true with a third consumer replica, across a kill -9 of Kafka with work in flight, and
across `docker compose down && up` (every acknowledged sample kept: the named volumes hold the data).

The tests run in order on one compose project (conftest.py); each phase verifies the whole range since the start."""

from __future__ import annotations

import json
import time

import requests
from confluent_kafka.admin import AdminClient

from healthpipe.producer import watermarks
from tests.compose.conftest import wait
from tests.support import influx
from tests.support.influx import iso
from tests.support.kafka import committed_offsets, end_offsets
from tests.support.pipeline import committed_all

STARTED_MS = int(time.time() * 1000)  # at import: only a lower bound (an hour of margin below)


def _watermark(cfg) -> int:
    """The oldest query watermark: everything before it has been published (0 until every query has one)."""
    marks = watermarks.load(cfg, timeout=10)
    return min(marks.values()) if len(marks) == len(cfg.extract.queries) else 0


def _caught_up(cfg, after_ms: int) -> int:
    """The watermark once it has passed `after_ms` and the consumer group has committed everything."""
    mark = _watermark(cfg)
    return mark if mark > after_ms and committed_all(cfg) else 0


def _verify(compose, cfg, until_ms: int) -> dict:
    """`healthpipe verify` in the image, over everything since the test started."""
    out = compose.run("run", "--rm", "--no-deps", "-T", "verify", "verify",
                      "--from", iso(compose.started_ms - 60_000),
                      "--to", iso(until_ms), "--json", check=False, timeout=300)
    assert out.returncode == 0, f"verify exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-2000:]}"
    doc = json.loads(out.stdout)
    assert doc["exact"], doc
    assert sum(q["expected"] for q in doc["queries"]) > 0, doc
    return doc


def _points(cfg) -> int:
    return influx.count(cfg.load.influxdb, 'r._measurement == "health_metrics"', start=iso(STARTED_MS - 3_600_000))


def test_data_flows_and_influxdb_equals_prometheus(compose, cfg):
    mark = wait(lambda: _caught_up(cfg, compose.started_ms + 20_000), 300, "the pipeline to publish and load 20 s",
                compose)
    assert _points(cfg) > 0
    _verify(compose, cfg, mark)
    # the feature server's container answers from its stream store, as fresh as the topic
    answer = wait(lambda: _features(), 120, "the feature server's stream store to answer", compose)
    assert answer["series"] and answer["freshness"]["staleness_s"] < 30, answer["freshness"]


def _features() -> dict | None:
    try:
        answer = requests.get("http://127.0.0.1:8010/features", params={"query": "availability", "window": "1m"},
                              timeout=10).json()
    except (requests.RequestException, ValueError):
        return None
    return answer if answer.get("freshness", {}).get("source") == "stream" and answer.get("series") else None


def _members(cfg) -> int:
    admin = AdminClient({"bootstrap.servers": cfg.kafka.bootstrap_servers})
    (future,) = admin.describe_consumer_groups([cfg.kafka.group_id], request_timeout=10).values()
    group = future.result()
    assigned = {tp.partition for m in group.members for tp in m.assignment.topic_partitions}
    return len(group.members) if assigned == set(range(cfg.kafka.partitions)) else 0


def test_a_third_consumer_replica_joins_the_group_and_nothing_is_lost(compose, cfg):
    assert wait(lambda: _members(cfg), 60, "the two default replicas to share the partitions", compose) == 2
    compose.run("up", "--detach", "--no-build", "--no-recreate", "--scale", "consumer=3")
    wait(lambda: _members(cfg) == 3, 120, "three consumers sharing all partitions", compose)
    since = int(time.time() * 1000)
    _verify(compose, cfg, wait(lambda: _caught_up(cfg, since + 10_000), 180, "10 s more with 3 replicas", compose))


def _uncommitted(cfg) -> dict[int, tuple[int, int]]:
    """Partitions holding records the consumer group has not committed: {partition: (committed, end)}. A
    transaction's marker ends each batch, so a partition is done when committed is one short of the end."""
    ends, committed = end_offsets(cfg, cfg.kafka.topic), committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic)
    return {p: (committed[p], end) for p, end in ends.items() if end > max(committed[p], 0) + 1}


def test_kafka_killed_with_work_in_flight_loses_nothing(compose, cfg):
    # The consumers are frozen (docker pause) while the producer keeps publishing, so at the kill Kafka holds
    # records nobody has committed, and no commit can land between this reading and the kill.
    compose.run("pause", "consumer")
    try:
        in_flight = wait(lambda: _uncommitted(cfg), 60, "records the frozen consumers have not committed", compose)
        compose.run("kill", "kafka")  # SIGKILL: no clean shutdown, no flush
    finally:
        compose.run("unpause", "consumer")
    killed_at = int(time.time() * 1000)
    time.sleep(10)  # producer and consumers run on against a dead broker
    compose.run("start", "kafka")
    mark = wait(lambda: _caught_up(cfg, killed_at + 15_000), 300, "the pipeline to recover and catch up", compose)
    committed = committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic)
    for partition, (before, end) in in_flight.items():  # what was uncommitted at the kill is committed now
        assert committed[partition] >= end - 1 > before, (partition, before, end, committed[partition])
    _verify(compose, cfg, mark)


def test_down_and_up_keeps_every_acknowledged_sample(compose, cfg):
    before_mark = wait(lambda: _caught_up(cfg, compose.started_ms + 20_000), 300, "20 s published and committed",
                       compose)
    points_before = _points(cfg)
    offsets_before = committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic)
    compose.run("down", "--timeout", "60")  # containers removed, named volumes kept
    down_at = int(time.time() * 1000)
    compose.run("up", "--detach", "--no-build", timeout=600)
    # Kafka kept its log (KAFKA_LOG_DIRS is the volume): the group's offsets are still there, not reset
    offsets_after = wait(lambda: committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic), 180,
                         "Kafka to answer after up", compose)
    assert max(offsets_before.values()) >= 0, offsets_before  # there was something to keep
    assert all(offsets_after[p] >= offsets_before[p] for p in offsets_before), (offsets_before, offsets_after)
    mark = wait(lambda: _caught_up(cfg, down_at + 15_000), 300, "the pipeline to run again after up", compose)
    assert _points(cfg) >= points_before  # InfluxDB kept its volume
    assert mark > before_mark
    _verify(compose, cfg, mark)
