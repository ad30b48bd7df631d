"""Per-query watermarks, kept in a compacted Kafka topic.

A watermark record is written in the same Kafka transaction as the data it covers, so the committed
topic and the committed watermark always agree: after a crash, resuming from the watermark neither
skips nor repeats a window.
"""

from __future__ import annotations

import logging
import time

import orjson
from confluent_kafka import KafkaError, TopicPartition

from common.config import HealthpipeConfig
from common.kafka import reader

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
        consumer.assign([TopicPartition(cfg.kafka.watermark_topic, 0, 0)])  # offset 0 = from the start
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            err, value = msg.error(), msg.value()
            if err is not None:
                # End of partition (counting control records and the LSO): we have seen everything.
                if err.code() == KafkaError._PARTITION_EOF:
                    return watermarks
                raise RuntimeError(f"reading watermarks: {err}")
            if value is None:  # a tombstone: the query's watermark was deleted
                watermarks.pop((msg.key() or b"").decode(), None)
                continue
            record = orjson.loads(value)
            watermarks[record["query"]] = int(record["watermark_ms"])
        raise TimeoutError(f"watermark topic {cfg.kafka.watermark_topic} not read to its end in {timeout}s")
    finally:
        consumer.close()
