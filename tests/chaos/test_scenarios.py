"""Fault injection with exact counts (docs/reliability.md lists each scenario and its last result)."""

from __future__ import annotations

import random
import signal
import subprocess
import time

from common.kafka import ensure_topics
from ops import stack
from tests.chaos.ledger import checksum, generate
from tests.support import kafka
from tests.support.faults import FaultProxy
from tests.support.pipeline import (
    ConsumerThread,
    committed_all,
    consume_to_the_end,
    kill_9_after,
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


def assert_done(cfg, ledger):
    ledger.assert_exact(cfg)
    assert committed_all(cfg), "committed offsets != end offsets"


def test_01_baseline_200k_samples(native):
    cfg, ledger = setup(native, 1, 200, 1000)
    replica = ConsumerThread(cfg, until_idle=5)
    replica.join(600)
    assert len(ledger.truth) == 200_000
    assert_done(cfg, ledger)
    assert kafka.end_offsets(cfg, cfg.kafka.dead_letter_topic) == {p: 0 for p in range(3)}


def test_02_kill_9_consumer_at_10_random_moments(native, tmp_path):
    cfg, ledger = setup(native, 2, 100, 1000, influxdb={"batch_size": 2000})
    config_file = write_config(cfg, tmp_path / "c.yaml")
    rng = random.Random(2)
    log = tmp_path / "consumer.log"
    kill_9_after("consumer", config_file, cfg, [rng.uniform(1.0, 4.0) for _ in range(10)], log)
    consume_to_the_end(config_file, cfg, log, timeout=600)
    assert_done(cfg, ledger)


def test_05_influxdb_stopped_60s(native):
    cfg, ledger = setup(native, 5, 50, 1000)
    replica = ConsumerThread(cfg)
    influxdb = stack.service("influxdb")
    try:
        wait_until(lambda: replica.metric("healthpipe_consumer_samples_written_total") > 0, 60, what="first writes")
        stack.stop(influxdb)
        time.sleep(3)  # a write that InfluxDB acknowledged while shutting down may still commit: let it
        before = kafka.committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic)
        time.sleep(60)
        assert kafka.committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic) == before
        assert replica.metric("healthpipe_consumer_rebalances_total", {"kind": "revoke"}) == 0
    finally:
        stack.start(influxdb)
    wait_until(lambda: committed_all(cfg), 300, what="drain after InfluxDB is back")
    replica.stop()
    assert_done(cfg, ledger)


def test_06_influxdb_answering_429_and_503_with_retry_after(native):
    proxy = FaultProxy(native.influx_url)
    try:
        cfg, ledger = setup(native, 6, 20, 500, influxdb={"url": proxy.url})
        proxy.fail_path_prefix = "/api/v2/write"  # the bucket check at start goes through
        proxy.fail_status, proxy.fail_headers = 429, {"Retry-After": "2"}
        replica = ConsumerThread(cfg)
        wait_until(lambda: proxy.failed >= 2, 60, what="throttled writes")
        t_fail = time.monotonic()
        failed_at_switch = proxy.failed
        assert not any(o > 0 for o in kafka.committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic).values())
        proxy.fail_status, proxy.fail_headers = 503, {"Retry-After": "3"}
        time.sleep(7)
        # Retry-After honoured: about one attempt per 2-3 s, not a hot loop
        assert proxy.failed - failed_at_switch <= 4, proxy.failed - failed_at_switch
        assert not any(o > 0 for o in kafka.committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic).values())
        proxy.fail_status = None
        wait_until(lambda: committed_all(cfg), 120, what="success after throttling")
        assert time.monotonic() - t_fail > 7
        replica.stop()
        assert_done(cfg, ledger)
    finally:
        proxy.close()


def test_09_rebalance_storm(native):
    cfg, ledger = setup(native, 9, 120, 1000, influxdb={"batch_size": 2000})
    rng = random.Random(9)
    replicas = [ConsumerThread(cfg)]
    for _ in range(8):
        time.sleep(rng.uniform(2, 4))
        if len(replicas) > 1 and rng.random() < 0.5:
            replicas.pop(rng.randrange(len(replicas))).stop()
        else:
            replicas.append(ConsumerThread(cfg))
    wait_until(lambda: committed_all(cfg), 300, what="the group to drain")
    for r in replicas:
        r.stop()
    assert_done(cfg, ledger)


def test_11_kafka_broker_restarted_mid_stream(native, tmp_path):
    cfg, first = setup(native, 11, 50, 1000)
    replica = ConsumerThread(cfg)
    wait_until(lambda: replica.metric("healthpipe_consumer_samples_written_total") > 0, 60, what="first writes")
    broker = stack.service("kafka")
    stack.stop(broker)
    time.sleep(5)
    stack.start(broker)
    second = generate(111, 20, 500)
    kafka.produce(cfg, cfg.kafka.topic, second.messages)
    wait_until(lambda: committed_all(cfg), 300, what="drain after the broker restart")
    replica.stop()
    assert_done(cfg, first)
    second.assert_exact(cfg)


def test_12_sigterm_flushes_commits_and_a_restart_redelivers_nothing(native, tmp_path):
    cfg, ledger = setup(native, 12, 50, 1000, consumer={"batch_max_age_seconds": 30.0},
                        influxdb={"batch_size": 100_000})
    config_file = write_config(cfg, tmp_path / "c.yaml")
    proc = start_process("consumer", config_file, cfg, log=tmp_path / "consumer.log")
    time.sleep(8)  # everything consumed into one big held batch (30 s age, 100k size): nothing written yet
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert_done(cfg, ledger)
    again = ConsumerThread(cfg, until_idle=4)
    again.join()
    assert again.metric("healthpipe_consumer_messages_consumed_total") == 0


def test_13_same_range_replayed_twice_is_identical(native):
    from consumer import replay
    from tests.support.pipeline import ConsumerThread as Replica

    cfg, ledger = setup(native, 13, 20, 600)
    Replica(cfg, until_idle=3).join()
    first = checksum(ledger.loaded(cfg))
    start = min(ts for _, ts, _ in ledger.truth)
    end = max(ts for _, ts, _ in ledger.truth)
    from tests.integration.test_operations import iso

    for _ in range(2):
        replay.reload_range(None, iso(start), iso(end), cfg=cfg, progress=False)
        assert checksum(ledger.loaded(cfg)) == first
    assert_done(cfg, ledger)


def test_14_hostile_labels_and_a_token_never_logged(native, tmp_path):
    from common.messages import SeriesWindow, headers

    cfg, ledger = setup(native, 14, 5, 100)
    hostile = ['a\nhealth_metrics,instance=x value=666 1', 'b,run=other', 'c=d e', '"q"', "back\\", "ünï✓\r"]
    t = min(ts for _, ts, _ in ledger.truth)
    extra = [SeriesWindow("availability", "availability", {"__name__": "up", "run": ledger.run, "instance": f"h{i}",
                                                           "evil": v}, t - 1, t, [(t, "1")])
             for i, v in enumerate(hostile)]
    kafka.produce(cfg, cfg.kafka.topic, [(w.key, w.to_json(), headers()) for w in extra])
    ledger.truth |= {(f"h{i}", t, 1.0) for i in range(len(hostile))}
    config_file = write_config(cfg, tmp_path / "c.yaml")
    log = tmp_path / "consumer.log"
    # a bad bucket first: the error path must not print the token either
    bad_cfg = cfg.model_copy(deep=True)
    bad_cfg.load.influxdb.bucket = "missing-bucket"
    bad = start_process("consumer", write_config(bad_cfg, tmp_path / "bad.yaml"), cfg, log=log)
    assert bad.wait(timeout=60) == 1
    proc = start_process("consumer", config_file, cfg, "--until-idle", "4", log=log)
    assert proc.wait(timeout=120) == 0
    subprocess.run(["true"])
    assert_done(cfg, ledger)
    text = log.read_text()
    assert cfg.load.influxdb.token.get_secret_value() not in text
    assert "missing-bucket" in text  # the error named the cause


def test_04_producer_stopped_for_two_minutes_backfills_the_gap_exactly(native):
    from producer.service import ProducerService
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


def test_10_write_slower_than_max_poll_interval(native):
    """InfluxDB answers after 15 s while max.poll.interval.ms is 10 s.

    Writes run on the consumer's writer thread while its loop keeps polling (paused, under backpressure),
    so a slow write no longer costs the member its partitions: it stays in the group, commits nothing
    until the write returns, and the data ends up exact."""
    proxy = FaultProxy(native.influx_url)
    try:
        cfg, ledger = setup(native, 10, 40, 500, influxdb={"url": proxy.url, "timeout_seconds": 60,
                                                        "batch_size": 2000},
                            consumer={"max_poll_interval_ms": 10_000})
        proxy.fail_path_prefix = "/api/v2/write"
        proxy.delay = 15.0
        replica = ConsumerThread(cfg)
        wait_until(lambda: proxy.requests >= 2, 60, what="the first (slow) write")  # 1 = the bucket check
        time.sleep(5)
        assert not any(o >= 0 for o in kafka.committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic).values())
        wait_until(lambda: proxy.requests >= 3, 60, what="a second slow write")
        proxy.delay = 0.0
        wait_until(lambda: committed_all(cfg), 180, what="drain after the slow writes")
        kicked = sum(replica.metric("healthpipe_consumer_rebalances_total", {"kind": k}) for k in ("lost", "revoke"))
        assert kicked == 0 and len(replica.service.assigned) == cfg.kafka.partitions
        replica.stop()
        ledger.assert_exact(cfg)
    finally:
        proxy.close()
