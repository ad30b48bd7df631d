"""Per-query watermarks, kept in a compacted Kafka topic.

A watermark record is written in the same Kafka transaction as the data it covers, so the committed
topic and the committed watermark always agree: after a crash, resuming from the watermark neither
skips nor repeats a window.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import orjson
from confluent_kafka import Consumer, KafkaException, Message

from healthpipe.common.config import HealthpipeConfig
from healthpipe.common.errors import Retryable
from healthpipe.common.kafka import read_to_end, reader

log = logging.getLogger(__name__)


def encode(query: str, watermark_ms: int) -> tuple[bytes, bytes]:
    """(key, value) of one watermark record."""
    return query.encode(), orjson.dumps({"query": query, "watermark_ms": watermark_ms,
                                         "written_at_ms": int(time.time() * 1000)})


def load(cfg: HealthpipeConfig, timeout: float = 30) -> dict[str, int]:
    """The latest committed watermark of every query, read from the start of the compacted topic.

    Call this after `init_transactions()`: that aborts a crashed predecessor's open transaction, so the
    read_committed reader is not held back by it.
    """
    consumer = reader(cfg)
    watermarks: dict[str, int] = {}
    try:
        for msg in _read(consumer, cfg.kafka.watermark_topic, timeout):
            value = msg.value()
            if value is None:  # a tombstone: the query's watermark was deleted
                watermarks.pop((msg.key() or b"").decode(), None)
                continue
            record = orjson.loads(value)
            watermarks[record["query"]] = int(record["watermark_ms"])
        return watermarks
    finally:
        consumer.close()


def _read(consumer: Consumer, topic: str, timeout: float) -> Iterator[Message]:
    try:
        yield from read_to_end(consumer, topic, {0: 0}, timeout=timeout)
    except (KafkaException, TimeoutError) as exc:
        raise Retryable(f"watermark topic {topic} not readable: {exc}") from None
