"""Reading Kafka back in tests: whole topics (read_committed), committed and end offsets."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, IsolationLevel, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from healthpipe.common.config import HealthpipeConfig


def read_topic(cfg: HealthpipeConfig, topic: str, timeout: float = 60, committed_only: bool = True) -> list:
    """Every message of `topic`, all partitions, from the beginning to the end."""
    consumer = Consumer({**cfg.kafka.as_librdkafka_dict(), "group.id": "test-reader",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "isolation.level": "read_committed" if committed_only else "read_uncommitted"})
    meta = consumer.list_topics(topic, timeout=30).topics[topic]
    partitions = [TopicPartition(topic, p, 0) for p in meta.partitions]
    consumer.assign(partitions)
    pending = {tp.partition for tp in partitions}
    messages = []
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                pending.discard(msg.partition())
                continue
            raise RuntimeError(msg.error())
        messages.append(msg)
    consumer.close()
    assert not pending, f"partitions {pending} of {topic} not read to the end in {timeout}s"
    return messages


def end_offsets(cfg: HealthpipeConfig, topic: str) -> dict[int, int]:
    consumer = Consumer({**cfg.kafka.as_librdkafka_dict(), "group.id": "test-offsets"})
    meta = consumer.list_topics(topic, timeout=30).topics[topic]
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in meta.partitions}
    consumer.close()
    return ends


def committed_offsets(cfg: HealthpipeConfig, group: str, topic: str) -> dict[int, int]:
    consumer = Consumer({**cfg.kafka.as_librdkafka_dict(), "group.id": group})
    meta = consumer.list_topics(topic, timeout=30).topics[topic]
    committed = consumer.committed([TopicPartition(topic, p) for p in meta.partitions], timeout=30)
    consumer.close()
    return {tp.partition: tp.offset for tp in committed}


def reset_offsets(cfg: HealthpipeConfig, group: str, topic: str, offset: int) -> None:
    """Commit `offset` for every partition of `topic` in `group` (no member may be running)."""
    consumer = Consumer({**cfg.kafka.as_librdkafka_dict(), "group.id": group, "enable.auto.commit": False})
    meta = consumer.list_topics(topic, timeout=30).topics[topic]
    consumer.commit(offsets=[TopicPartition(topic, p, offset) for p in meta.partitions], asynchronous=False)
    consumer.close()


def open_transactions(cfg: HealthpipeConfig, topics: list[str]) -> dict[tuple[str, int], tuple[int, int]]:
    """Partitions whose last stable offset is behind the high watermark: an unfinished transaction holds
    records there. {(topic, partition): (last stable offset, high watermark)}."""
    admin = AdminClient(cfg.kafka.as_librdkafka_dict())
    found = {}
    for topic in topics:
        parts = [TopicPartition(topic, p) for p in admin.list_topics(topic, timeout=30).topics[topic].partitions]
        stable = admin.list_offsets({tp: OffsetSpec.latest() for tp in parts},
                                    isolation_level=IsolationLevel.READ_COMMITTED)
        high = admin.list_offsets({tp: OffsetSpec.latest() for tp in parts},
                                  isolation_level=IsolationLevel.READ_UNCOMMITTED)
        for tp in parts:
            lso, hw = stable[tp].result(30).offset, high[tp].result(30).offset
            if lso < hw:
                found[(topic, tp.partition)] = (lso, hw)
    return found


def produce(cfg: HealthpipeConfig, topic: str, messages: list[tuple[bytes | None, bytes | None, list | None]]) -> None:
    """(key, value, headers) as they are; every delivery checked."""
    producer = Producer({**cfg.kafka.as_librdkafka_dict(), "enable.idempotence": True,
                         "message.max.bytes": 10_000_000})
    errors = []
    for key, value, headers in messages:
        producer.produce(topic, key=key, value=value, headers=headers,
                         on_delivery=lambda err, _m: errors.append(err) if err else None)
        producer.poll(0)
    assert producer.flush(60) == 0 and not errors, errors
