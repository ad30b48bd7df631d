"""The producer while Kafka is away: at start it waits (unready) instead of exiting; mid-run its windows fail,
it turns unready and its watermark stands still; when Kafka is back it catches up with no gap and no duplicate."""

from __future__ import annotations

import threading
import time

from healthpipe.ops import stack
from healthpipe.producer.service import ProducerService
from tests.integration.test_producer import RAW_UP, prometheus_raw, published, wait_for_scrapes
from tests.support.pipeline import wait_until


def test_24_producer_waits_for_kafka_at_start_and_survives_it_going_away(native):
    """Kafka away at start (the producer waits, unready) and killed -9 while a transaction is open: that
    transaction is aborted (transactions_total{outcome="aborted"} moves), the watermark stands still, and
    once Kafka is back the topic holds exactly Prometheus' samples, no gap and no duplicate."""
    wait_for_scrapes(native)
    # max_backfill far above the outage (noticing it takes up to a transaction timeout, the broker's restart
    # more on a slow machine): a shorter one truncates the gap by design and the comparison fails.
    cfg = native.config(extract={"queries": [RAW_UP], "max_backfill": "15m", "lag_seconds": 1, "raw_chunk": "5s",
                                 "interval_seconds": 1})
    broker = stack.service("kafka")
    service = ProducerService(cfg)
    # 1. Kafka down at start: initialize() waits, unready, and goes on once Kafka is back
    stack.kill(broker)
    started = threading.Thread(target=service.initialize, daemon=True)
    started.start()
    time.sleep(8)
    assert started.is_alive() and not service.ready(), "the producer should be waiting for Kafka, unready"
    stack.start(broker)
    started.join(120)
    assert not started.is_alive() and service.ready()
    loop = threading.Thread(target=service.run_continuous, daemon=True)
    loop.start()
    try:
        wait_until(lambda: "availability" in service.watermarks, 60, what="a first window published")
        # 2. Kafka away mid-run, while windows are being published
        sample = service.metrics.registry.get_sample_value

        def outcomes() -> tuple[float, float]:
            return (sample("healthpipe_producer_transactions_total", {"outcome": "committed"}) or 0,
                    sample("healthpipe_producer_transactions_total", {"outcome": "aborted"}) or 0)

        # Caught up first (the first cycle backfills max_backfill): an outage that starts mid-backfill pushes the
        # watermark past max_backfill, which truncates by design. Then each transaction is held open 0.3 s before
        # its commit, so the kill below lands inside one rather than in the microseconds between check and kill.
        wait_until(lambda: service.watermarks["availability"] >= time.time() * 1000 - 10_000, 120,
                   what="the producer to catch up before the fault")
        real_commit = service.publisher._commit

        def slow_commit() -> None:
            time.sleep(0.3)
            real_commit()

        service.publisher._commit = slow_commit  # type: ignore[method-assign]
        wait_until(lambda: sample("healthpipe_producer_transaction_open") == 1, 30, interval=0.002,
                   what="a transaction open")
        committed_at_kill, aborted_at_kill = outcomes()
        begun_at_kill = service.publisher.transactions_begun
        stack.kill(broker)
        at_kill = service.watermarks["availability"]
        # the transaction open before the kill is still the open one after it: the kill hit it
        assert service.publisher.in_transaction and service.publisher.transactions_begun == begun_at_kill
        wait_until(lambda: not service.ready(), 120, what="the producer to notice and turn unready")
        # ...and that transaction was aborted: the first outcome after the kill is an abort, and nothing commits
        wait_until(lambda: outcomes()[1] > aborted_at_kill, 120, what="the open transaction to be aborted")
        assert outcomes()[0] == committed_at_kill, "a transaction committed with Kafka down"
        time.sleep(5)
        assert service.watermarks["availability"] <= at_kill + 5_000  # at most the window that committed
        stuck = service.watermarks["availability"]
        time.sleep(5)
        assert service.watermarks["availability"] == stuck
    finally:
        stack.start(broker)
    wait_until(service.ready, 180, what="ready again once Kafka is back")
    wait_until(lambda: service.watermarks["availability"] >= time.time() * 1000 - 10_000, 180,
               what="the producer to catch up")
    service.stop()
    loop.join(60)
    end = service.watermarks["availability"]
    service.close()
    samples, begin = published(cfg)
    keys = [(labels, ts) for labels, ts, _ in samples]
    assert len(keys) == len(set(keys)), "duplicate (series, timestamp)"
    assert set(samples) == prometheus_raw(native.prometheus_url, 'up{job="test-app"}', begin, end)
