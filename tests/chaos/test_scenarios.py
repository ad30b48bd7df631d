"""Fault injection with exact outcomes (docs/reliability.md lists each scenario and its last result).

Every scenario that breaks something first proves the fault hit work in flight (uncommitted messages or an
outstanding write, read from the consumer's metrics and from Kafka at the moment of the fault); the data is
sized, or the sink slowed through the fault proxy, so that there is such work. Every scenario ends with one
ledger check (`assert_done`): each point whole (measurement, tags, field, value, time) equals the truth,
the committed offsets equal the end offsets, no (series, timestamp) twice on the topic, and the dead-letter
topic holds exactly what the scenario expects.
"""

from __future__ import annotations

import random
import time

import pytest

from healthpipe.common.kafka import ensure_topics
from healthpipe.ops import stack
from tests.chaos.ledger import assert_dead_letters, assert_no_duplicate_samples, checksum, generate
from tests.support import kafka
from tests.support.faults import FaultProxy
from tests.support.pipeline import (
    REJOIN_SOON,
    ConsumerProcess,
    ConsumerThread,
    committed_all,
    consume_to_the_end,
    holds_uncommitted_work,
    kill_9_with_work_in_flight,
    start_process,
    wait_until,
    write_config,
)


def setup(services, seed, n_series, n_samples, **overrides):
    consumer = {"batch_max_age_seconds": 1.0, **overrides.pop("consumer", {})}
    cfg = services.config(consumer=consumer, **overrides)
    ensure_topics(cfg)
    ledger = generate(seed, n_series, n_samples)
    kafka.produce(cfg, cfg.kafka.topic, ledger.messages)
    return cfg, ledger


def assert_done(cfg, ledger, dead_letters: dict[str, int] | None = None):
    ledger.assert_exact(cfg)
    assert committed_all(cfg), "committed offsets != end offsets"
    assert_no_duplicate_samples(cfg)
    assert_dead_letters(cfg, dead_letters)


@pytest.fixture
def slow_influx(native):
    """InfluxDB behind the fault proxy: writes can be delayed, failed or hung; everything else passes."""
    proxy = FaultProxy(native.influx_url)
    proxy.fail_path_prefix = "/api/v2/write"
    yield proxy
    proxy.close()


def drain_exactly(replica: ConsumerThread, cfg, ledger, what: str) -> None:
    """After a fault: the replica drains the topic, stops, and InfluxDB holds exactly the ledger. A replica that
    died meanwhile fails this at once, not after the drain's time-out."""
    def drained() -> bool:
        if not replica.thread.is_alive():
            raise AssertionError(f"{what}: the replica died ({replica.error!r})")
        return committed_all(cfg)

    wait_until(drained, 300, what=what)
    replica.stop()
    assert_done(cfg, ledger)


def in_flight_now(replica: ConsumerThread, cfg) -> None:
    """Evidence, at the moment of a fault: the replica holds uncommitted messages and Kafka has offsets left."""
    uncommitted = replica.metric("healthpipe_consumer_uncommitted_messages")
    assert uncommitted > 0, "the fault would hit no uncommitted work"
    assert not committed_all(cfg), "everything was committed before the fault: it proves nothing"


def test_01_baseline_200k_samples(native):
    cfg, ledger = setup(native, 1, 200, 1000)
    replica = ConsumerThread(cfg, until_idle=5)
    replica.join(600)
    assert len(ledger.truth) == 200_000
    assert_done(cfg, ledger)


def test_02_kill_9_consumer_at_10_random_moments(native, slow_influx, tmp_path):
    """Writes take 1 s, so every kill lands while batches are consumed but not committed."""
    slow_influx.delay = 1.0
    cfg, ledger = setup(native, 2, 200, 1000, influxdb={"batch_size": 2000, "url": slow_influx.url},
                        consumer=REJOIN_SOON)
    rng = random.Random(2)
    log = tmp_path / "consumer.log"
    evidence = kill_9_with_work_in_flight(cfg, tmp_path, log, [rng.uniform(1.0, 4.0) for _ in range(10)])
    assert len(evidence) == 10
    slow_influx.delay = 0.0
    consume_to_the_end(write_config(cfg, tmp_path / "c.yaml"), cfg, log, timeout=600)
    assert_done(cfg, ledger)


def test_05_influxdb_stopped_60s(native, slow_influx):
    slow_influx.delay = 0.5
    cfg, ledger = setup(native, 5, 50, 1000, influxdb={"batch_size": 1000, "url": slow_influx.url})
    replica = ConsumerThread(cfg)
    influxdb = stack.service("influxdb")
    try:
        wait_until(lambda: replica.metric("healthpipe_consumer_samples_written_total") > 0, 60, what="first writes")
        in_flight_now(replica, cfg)
        stack.stop(influxdb)
        time.sleep(3)  # a write that InfluxDB acknowledged while shutting down may still commit: let it
        before = kafka.committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic)
        time.sleep(60)
        assert kafka.committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic) == before
        assert replica.metric("healthpipe_consumer_paused") == 1
        assert replica.metric("healthpipe_consumer_rebalances_total", {"kind": "revoke"}) == 0
    finally:
        stack.start(influxdb)
    slow_influx.delay = 0.0
    drain_exactly(replica, cfg, ledger, "drain after InfluxDB is back")


def test_06_influxdb_answering_429_and_503_with_retry_after(native, slow_influx):
    failures: list[float] = []
    cfg, ledger = setup(native, 6, 20, 500, influxdb={"url": slow_influx.url})
    slow_influx.fail_status, slow_influx.fail_headers = 429, {"Retry-After": "2"}
    replica = ConsumerThread(cfg)
    wait_until(lambda: slow_influx.failed >= 2, 60, what="throttled writes")
    in_flight_now(replica, cfg)  # every message is held: nothing can be written
    slow_influx.fail_status, slow_influx.fail_headers = 503, {"Retry-After": "3"}
    switched, failed_at_switch = time.monotonic(), slow_influx.failed
    while time.monotonic() - switched < 10:
        if slow_influx.failed > failed_at_switch + len(failures):
            failures.append(time.monotonic())
        time.sleep(0.02)
    # Retry-After honoured exactly: after the switch, one attempt every 3 s (the first within 2 s, when the
    # 429's wait ends), never a hot loop: at most 4 attempts in 10 s, each at least ~3 s after the last.
    assert 3 <= len(failures) <= 4, failures
    gaps = [b - a for a, b in zip(failures, failures[1:], strict=False)]
    assert all(2.8 <= g <= 4.5 for g in gaps), gaps
    assert not any(o > 0 for o in kafka.committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic).values())
    slow_influx.fail_status = None
    wait_until(lambda: committed_all(cfg), 120, what="success after throttling")
    replica.stop()
    assert_done(cfg, ledger)


def test_09_rebalance_storm_with_kills(native, slow_influx, tmp_path):
    """Replicas (processes) join and leave every 2-4 s while writes are slow; a leaver is SIGTERMed (it flushes
    and commits within revoke_deadline) or killed -9 (its partitions move after the session timeout and its
    uncommitted batches are re-read elsewhere). Each leaver held uncommitted work when it left."""
    # 1 s a write of 2,000 lines: ~2k samples/s a replica, so 200k samples outlast the ~30 s storm.
    slow_influx.delay = 1.0
    cfg, ledger = setup(native, 9, 200, 1000, influxdb={"batch_size": 2000, "url": slow_influx.url},
                        consumer={"session_timeout_ms": 6000})
    rng = random.Random(9)
    log = tmp_path / "consumers.log"
    replicas = [ConsumerProcess(cfg, tmp_path, log)]
    try:
        left = 0
        for _ in range(8):
            time.sleep(rng.uniform(2, 4))
            if len(replicas) > 1 and rng.random() < 0.5:
                # The leaver is a replica holding uncommitted work: a leave lands 2-4 s after a join, often mid-
                # rebalance, when a replica picked blindly may hold nothing (CI saw all three leaves land so).
                leaver = replicas.pop(replica_holding_work(replicas, rng))
                if rng.random() < 0.5:
                    leaver.kill_9()
                else:
                    assert leaver.terminate() == 0
                left += 1
            else:
                replicas.append(ConsumerProcess(cfg, tmp_path, log))
            assert not committed_all(cfg), "the group drained mid-storm: later changes would prove nothing"
        assert left >= 1, "no replica left during the storm"
        slow_influx.delay = 0.0
        wait_until(lambda: committed_all(cfg), 300, what="the group to drain")
        for r in replicas:
            assert r.terminate() == 0
    finally:  # a failure must not leave replicas running into the next scenarios
        for r in replicas:
            if r.proc.poll() is None:
                r.kill_9()
    assert_done(cfg, ledger)


def replica_holding_work(replicas: list[ConsumerProcess], rng: random.Random, timeout: float = 30) -> int:
    """The index of a replica (tried in random order) whose /metrics show uncommitted messages: waits for one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i in rng.sample(range(len(replicas)), len(replicas)):
            if holds_uncommitted_work(replicas[i].metrics()):
                return i
        time.sleep(0.1)
    raise AssertionError(f"no replica held uncommitted work for {timeout:.0f} s mid-storm")


def test_10_write_slower_than_max_poll_interval(native, slow_influx):
    """InfluxDB answers after 15 s while max.poll.interval.ms is 10 s.

    Writes run on the consumer's writer thread while its loop keeps polling (paused, under backpressure),
    so a slow write no longer costs the member its partitions: it stays in the group, commits nothing
    until the write returns, and the data ends up exact."""
    cfg, ledger = setup(native, 10, 40, 500, influxdb={"url": slow_influx.url, "timeout_seconds": 60,
                                                    "batch_size": 2000},
                        consumer={"max_poll_interval_ms": 10_000})
    slow_influx.delay = 15.0
    replica = ConsumerThread(cfg)
    wait_until(lambda: slow_influx.in_flight >= 1, 60, what="the first (slow) write")
    time.sleep(5)
    assert slow_influx.in_flight >= 1  # the write is outstanding, and...
    assert replica.metric("healthpipe_consumer_writes_outstanding") >= 1
    assert not any(o >= 0 for o in kafka.committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic).values())
    wait_until(lambda: slow_influx.requests >= 3, 60, what="a second slow write")
    slow_influx.delay = 0.0
    wait_until(lambda: committed_all(cfg), 180, what="drain after the slow writes")
    kicked = sum(replica.metric("healthpipe_consumer_rebalances_total", {"kind": k}) for k in ("lost", "revoke"))
    assert kicked == 0 and len(replica.service.assigned) == cfg.kafka.partitions
    replica.stop()
    assert_done(cfg, ledger)


@pytest.mark.parametrize("how", ["sigterm", "kill_9"])
def test_11_kafka_broker_down_mid_stream(native, slow_influx, how):
    """The broker goes away (SIGTERM or kill -9) for 5 s while the replica holds uncommitted work. During the
    outage it must stay up, keep that work and commit nothing; after, it drains and both ledgers are exact.
    The outage assertions fail if the fault lands in an idle moment (nothing uncommitted) or if the consumer
    gives up (thread dead) or drops its batch (uncommitted back to 0 before the broker returns)."""
    slow_influx.delay = 0.5
    cfg, first = setup(native, 11, 50, 1000, influxdb={"batch_size": 1000, "url": slow_influx.url})
    replica = ConsumerThread(cfg)
    wait_until(lambda: replica.metric("healthpipe_consumer_samples_written_total") > 0, 60, what="first writes")
    in_flight_now(replica, cfg)
    broker = stack.service("kafka")
    stack.stop(broker) if how == "sigterm" else stack.kill(broker)
    try:
        # While the broker is down: the replica stays up and holds its uncommitted work, and no commit lands (the
        # committed-offset gauge moves only when Kafka acknowledges a commit). Sampled every 0.25 s for 5 s.
        committed_at_fault = replica.metric("healthpipe_consumer_committed_offset")
        outage = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            outage.append((replica.thread.is_alive(), replica.error,
                           replica.metric("healthpipe_consumer_uncommitted_messages"),
                           replica.metric("healthpipe_consumer_committed_offset")))
            time.sleep(0.25)
        assert all(alive and error is None for alive, error, _, _ in outage), outage
        assert all(uncommitted > 0 for _, _, uncommitted, _ in outage), "the replica let go of its work"
        assert {committed for *_, committed in outage} == {committed_at_fault}, "a commit landed with the broker down"
    finally:  # a failed assertion must not leave the next tests without a broker
        stack.start(broker)
    slow_influx.delay = 0.0
    second = generate(111, 20, 500)
    kafka.produce(cfg, cfg.kafka.topic, second.messages)
    drain_exactly(replica, cfg, first, "drain after the broker restart")
    second.assert_exact(cfg)


def test_12_sigterm_with_a_write_outstanding_flushes_commits_and_redelivers_nothing(native, slow_influx, tmp_path):
    """SIGTERM while a write is outstanding and a batch is open: close() must finish both and commit."""
    slow_influx.delay = 4.0
    cfg, ledger = setup(native, 12, 50, 1000, consumer={"batch_max_age_seconds": 30.0},
                        influxdb={"batch_size": 20_000, "url": slow_influx.url, "timeout_seconds": 60})
    replica = ConsumerProcess(cfg, tmp_path, tmp_path / "consumer.log")
    total = len(ledger.messages)  # everything consumed (else a restart rightly reads the rest), a write still out
    at_signal = replica.wait_for("every message consumed and a write outstanding", lambda m:
                                 m.get("healthpipe_consumer_messages_consumed_total", 0) == total
                                 and m.get("healthpipe_consumer_writes_outstanding", 0) > 0
                                 and holds_uncommitted_work(m))
    assert not committed_all(cfg)
    assert replica.terminate() == 0
    assert at_signal["healthpipe_consumer_uncommitted_messages"] > 0
    assert_done(cfg, ledger)
    again = ConsumerThread(cfg, until_idle=4)
    again.join()
    assert again.metric("healthpipe_consumer_messages_consumed_total") == 0


def test_13_a_deleted_range_replayed_twice_comes_back_identical(native):
    from healthpipe.sinks.influx import replay
    from tests.integration.test_operations import delete_window
    from tests.support.influx import iso

    cfg, ledger = setup(native, 13, 20, 600)
    ConsumerThread(cfg, until_idle=3).join()
    first = checksum(ledger.loaded(cfg))
    start = min(p[4] for p in ledger.truth)
    end = max(p[4] for p in ledger.truth)
    delete_window(cfg, ledger.run, start, end)
    assert not ledger.loaded(cfg), "the delete left points behind: the replay would prove nothing"
    for _ in range(2):
        replay.reload_range(None, iso(start), iso(end), cfg=cfg, progress=False)
        assert checksum(ledger.loaded(cfg)) == first
    assert_done(cfg, ledger)


def test_14_hostile_labels_and_a_token_never_logged(native, tmp_path):
    from healthpipe.common.messages import SeriesWindow, headers
    from tests.support import influx

    cfg, ledger = setup(native, 14, 5, 100)
    marker = ledger.run.replace("-", "")
    hostile = [f'a\nhealth_metrics,instance=x{marker} value=666 1', f'b,run=other{marker}', 'c=d e', '"q"',
               "back\\", "ünï✓\r", f"x{marker}\nother_measurement{marker} value=1 1"]
    t = min(p[4] for p in ledger.truth)
    extra = [SeriesWindow("availability", "availability", {"__name__": "up", "job": "chaos", "run": ledger.run,
                                                           "instance": f"h{i}", "evil": v}, t - 1, t, [(t, "1")])
             for i, v in enumerate(hostile)]
    kafka.produce(cfg, cfg.kafka.topic, [(w.key, w.to_json(), headers()) for w in extra])
    config_file = write_config(cfg, tmp_path / "c.yaml")
    log = tmp_path / "consumer.log"
    # a bad bucket first: the error path must not print the token either
    bad_cfg = cfg.model_copy(deep=True)
    bad_cfg.load.influxdb.bucket = "missing-bucket"
    bad = start_process("consumer", write_config(bad_cfg, tmp_path / "bad.yaml"), cfg, log=log)
    assert bad.wait(timeout=60) == 1
    proc = start_process("consumer", config_file, cfg, "--until-idle", "4", log=log)
    assert proc.wait(timeout=120) == 0
    got = {p for p in ledger.loaded(cfg) if dict(p[1])["instance"].startswith("h")}
    assert len(got) == len(hostile)  # one point per hostile series, each with its own tags...
    evil = sorted(dict(p[1])["evil"] for p in got)
    assert all("\n" not in v and "\r" not in v for v in evil)
    ledger.truth |= got
    assert_done(cfg, ledger)
    # ...and nothing injected anywhere in the bucket: no measurement, tag or point the payloads name
    injected = influx.points(cfg.load.influxdb, f'strings.containsStr(v: r._measurement, substr: "{marker}") '
                             f'or (exists r.instance and r.instance == "x{marker}") '
                             f'or (exists r.run and r.run == "other{marker}")', start="0", measurement=None,
                             imports='import "strings"')
    assert injected == [], injected
    text = log.read_text()
    assert cfg.load.influxdb.token.get_secret_value() not in text
    assert "missing-bucket" in text  # the error named the cause


def test_04_producer_stopped_for_two_minutes_backfills_the_gap_exactly(native):
    from healthpipe.producer.service import ProducerService
    from tests.integration.test_producer import RAW_UP, prometheus_raw, published, wait_for_scrapes

    wait_for_scrapes(native)
    # max_backfill must exceed the outage, or the producer (rightly) skips what is older, loudly
    cfg = native.config(extract={"queries": [RAW_UP], "max_backfill": "5m", "lag_seconds": 1,
                                 "raw_chunk": "20s"})
    first = ProducerService(cfg)
    first.initialize()
    first.run_single_cycle()
    stopped_at = first.watermarks["availability"]
    first.close()
    time.sleep(120)  # the outage
    second = ProducerService(cfg)
    second.initialize()
    second.run_single_cycle()  # backfills ~120 s in 20 s windows
    end = second.watermarks["availability"]
    second.close()
    assert end - stopped_at >= 120_000
    samples, begin = published(cfg)
    keys = [(labels, ts) for labels, ts, _ in samples]
    assert len(keys) == len(set(keys)), "duplicate (series, timestamp)"
    assert set(samples) == prometheus_raw(native.prometheus_url, 'up{job="test-app"}', begin, end)
    assert sum(1 for _, ts, _ in samples if stopped_at < ts <= end) >= 100  # the gap, at 1 s scrapes
