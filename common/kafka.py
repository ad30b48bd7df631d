"""Kafka client factories and topic management: the one place that knows librdkafka's settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from common.config import HealthpipeConfig, KafkaSettings
from common.errors import HealthpipeError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def topic_specs(cfg: HealthpipeConfig) -> list[TopicSpec]:
    """The three topics healthpipe needs, with the settings it relies on."""
    k = cfg.kafka
    retention = str(k.retention_ms)
    return [
        TopicSpec(k.topic, k.partitions, {"retention.ms": retention, "cleanup.policy": "delete",
                                          "max.message.bytes": str(max(cfg.producer.max_message_bytes * 2,
                                                                       1_048_588))}),
        TopicSpec(k.dead_letter_topic, min(k.partitions, 3), {"retention.ms": retention,
                                                              "max.message.bytes": "10485760"}),
        # One partition, compacted: the latest watermark per query is all that matters.
        TopicSpec(k.watermark_topic, 1, {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}),
    ]


def admin_client(k: KafkaSettings) -> AdminClient:
    return AdminClient(k.as_librdkafka_dict())


def ensure_topics(cfg: HealthpipeConfig, timeout: float = 30) -> list[str]:
    """Create whichever of healthpipe's topics are missing; return the names created."""
    admin = admin_client(cfg.kafka)
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise HealthpipeError(f"Kafka at {cfg.kafka.bootstrap_servers} is not reachable: {exc}") from None
    missing = [s for s in topic_specs(cfg) if s.name not in existing]
    if not missing:
        return []
    futures = admin.create_topics([NewTopic(s.name, s.partitions, cfg.kafka.replication_factor, config=s.config)
                                   for s in missing], operation_timeout=timeout)
    created = []
    for name, fut in futures.items():
        try:
            fut.result(timeout)
            created.append(name)
            log.info("topic_created topic=%s", name)
        except KafkaException as exc:
            if exc.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS: another process won the race
                raise HealthpipeError(f"cannot create topic {name}: {exc}") from None
    return created


def describe_topic_configs(cfg: HealthpipeConfig, names: list[str]) -> dict[str, dict[str, str]]:
    admin = admin_client(cfg.kafka)
    futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, n) for n in names])
    return {res.name: {k: v.value for k, v in fut.result(30).items()} for res, fut in futures.items()}


def transactional_producer(cfg: HealthpipeConfig, transactional_id: str | None = None) -> Producer:
    return Producer({
        **cfg.kafka.as_librdkafka_dict(),
        "transactional.id": transactional_id or cfg.producer.transactional_id,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "zstd",
        "linger.ms": 20,
        "message.max.bytes": max(cfg.producer.max_message_bytes * 2, 1_000_000),
        "transaction.timeout.ms": 60_000,
    })


def plain_producer(cfg: HealthpipeConfig) -> Producer:
    """Idempotent, acks=all; for dead letters, where each delivery is checked before a commit."""
    return Producer({**cfg.kafka.as_librdkafka_dict(), "enable.idempotence": True, "acks": "all",
                     "compression.type": "zstd", "linger.ms": 5})


def group_consumer(cfg: HealthpipeConfig, group_id: str | None = None, **extra: object) -> Consumer:
    return Consumer({
        **cfg.kafka.as_librdkafka_dict(),
        "group.id": group_id or cfg.kafka.group_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "max.poll.interval.ms": cfg.consumer.max_poll_interval_ms,
        # librdkafka prefetches up to 64 MB per client by default; a few MB keep a replica's RSS flat
        # under a large backlog without slowing it down (a batch is ~5,000 samples).
        "queued.max.messages.kbytes": 8192,
        # Heartbeats run on librdkafka's own thread, so a short session only costs when a member dies:
        # its partitions move after this long instead of Kafka's default 45 s.
        "session.timeout.ms": cfg.consumer.session_timeout_ms,
        **extra,
    })


def reader(cfg: HealthpipeConfig) -> Consumer:
    """A group-less consumer for reading a topic end to end (watermarks, tests), read_committed."""
    return Consumer({
        **cfg.kafka.as_librdkafka_dict(),
        "group.id": "healthpipe-reader",  # required by librdkafka; never used to commit
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    })
