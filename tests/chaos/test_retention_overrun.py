"""Kafka retention overrun: the consumer is stopped longer than the topic keeps data. The loss is named (log +
healthpipe_consumer_offsets_lost_total), the consumer carries on from the earliest offset, `verify` shows the
exact missing range, and `verify --repair` fills it from Prometheus."""

from __future__ import annotations

import time

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from healthpipe.common.kafka import ensure_topics
from healthpipe.producer.service import ProducerService
from healthpipe.verify import verification
from healthpipe.verify.repair import repair
from tests.integration.test_producer import RAW_UP, wait_for_scrapes
from tests.support import kafka
from tests.support.influx import temporary_bucket
from tests.support.pipeline import ConsumerThread, wait_until


def log_start_offsets(cfg) -> dict[int, int]:
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": cfg.kafka.bootstrap_servers, "group.id": "lso-probe"})
    try:
        parts = c.list_topics(cfg.kafka.topic, timeout=10).topics[cfg.kafka.topic].partitions
        return {p: c.get_watermark_offsets(TopicPartition(cfg.kafka.topic, p), timeout=10)[0] for p in parts}
    finally:
        c.close()


def test_21_retention_overrun_is_named_verified_and_repaired(native):
    wait_for_scrapes(native, seconds=20)
    with temporary_bucket(native.config().load.influxdb, "retention") as bucket:
        cfg = native.config(extract={"queries": [RAW_UP], "max_backfill": "30s", "lag_seconds": 3},
                            kafka={"retention": "5s"}, influxdb={"bucket": bucket.bucket},
                            consumer={"batch_max_age_seconds": 0.5})
        ensure_topics(cfg)
        admin = AdminClient({"bootstrap.servers": cfg.kafka.bootstrap_servers})
        resource = ConfigResource(ConfigResource.Type.TOPIC, cfg.kafka.topic, incremental_configs=[
            ConfigEntry("segment.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
        admin.incremental_alter_configs([resource])[resource].result(30)
        producer = ProducerService(cfg)
        producer.initialize()
        producer.run_single_cycle()  # part 1: loaded and committed
        start = producer.watermarks["availability"] - 20_000  # inside part 1 (max_backfill 30 s, lag 3 s)
        first = ConsumerThread(cfg, until_idle=3)
        first.join()
        committed = kafka.committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic)
        loaded_until = producer.watermarks["availability"]
        time.sleep(8)
        producer.run_single_cycle()  # part 2: published while no consumer runs...
        gap_from = producer.watermarks["availability"]
        time.sleep(8)
        producer.run_single_cycle()  # part 3: rolls the segment holding part 2, which retention then deletes
        end = producer.watermarks["availability"]
        producer.close()
        wait_until(lambda: any(lso > max(committed.get(p, 0), 0) for p, lso in log_start_offsets(cfg).items()),
                   60, what="retention to delete records the group had not read")

        second = ConsumerThread(cfg, until_idle=4)
        second.join()
        lost = sum(second.metric("healthpipe_consumer_offsets_lost_total", {"topic": cfg.kafka.topic,
                                                                            "partition": str(p)})
                   for p in committed)
        assert lost > 0, "the overrun was not counted"

        report = verification.run(cfg, cfg.extract.queries, start, end)
        assert not report.exact and report.missing > 0
        (series,) = report.queries[0].series.values()
        # what is missing is what part 2 published (the deleted records), not part 1 or 3
        assert all(loaded_until < a and b <= gap_from for a, b, _ in series.missing_ranges), series.missing_ranges

        running = ConsumerThread(cfg)
        try:
            actions = repair(cfg, cfg.extract.queries, report.queries, progress=False)
        finally:
            running.stop()
        assert actions
        assert verification.run(cfg, cfg.extract.queries, start, end).exact
