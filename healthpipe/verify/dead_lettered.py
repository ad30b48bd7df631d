"""Dead letters of a verified range: why some expected samples are not in InfluxDB.

A point InfluxDB refused (reason `influx_rejected`) is on the dead-letter topic as its line of line protocol;
when that point is one the comparison found missing, it is moved from "missing" to "dead_lettered" (in its
series, its query and the total), so an operator reads "missing because dead-lettered: 3". Other dead
letters (messages that broke the contract) carry no sample time: they are counted by reason when they were
dead-lettered after the range began.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from confluent_kafka import KafkaException

from healthpipe.common.config import HealthpipeConfig
from healthpipe.common.dead_letters import headers_of
from healthpipe.common.errors import Retryable
from healthpipe.common.kafka import offsets_at, partitions_of, read_to_end, reader
from healthpipe.verify.compare import QueryResult


@dataclass
class DeadLetterCount:
    explained: int = 0  # missing points that are on the dead-letter topic
    by_reason: dict[str, int] = field(default_factory=dict)


def _point(value: bytes | None) -> tuple[str, int] | None:
    """(prefix, timestamp ms) of a refused line of line protocol, or None if it is not one."""
    try:
        prefix, _field, ts = (value or b"").decode().rsplit(" ", 2)
        return prefix, int(ts)
    except (UnicodeDecodeError, ValueError):
        return None


def count_dead_letters(cfg: HealthpipeConfig, results: list[QueryResult], start_ms: int,
                       end_ms: int) -> DeadLetterCount:
    count = DeadLetterCount()
    reasons: Counter = Counter()
    topic = cfg.kafka.dead_letter_topic
    consumer = reader(cfg)
    try:
        partitions = partitions_of(consumer, topic)
        # a sample is dead-lettered after it was published, which is after its timestamp
        for msg in read_to_end(consumer, topic, offsets_at(consumer, topic, partitions, start_ms), timeout=300):
            reason = headers_of(msg.headers()).reason
            point = _point(msg.value()) if reason.endswith("_rejected") else None
            if point is None:
                reasons[reason] += 1
                continue
            prefix, ts = point
            if not start_ms < ts <= end_ms:
                continue
            reasons[reason] += 1
            for result in results:
                diff = result.series.get(prefix)
                if diff and any(a <= ts <= b for a, b, _ in diff.missing_ranges) and diff.missing > 0:
                    diff.missing -= 1
                    diff.dead_lettered += 1
                    result.missing -= 1
                    result.dead_lettered += 1
                    count.explained += 1
                    break
    except (KafkaException, TimeoutError) as exc:
        raise Retryable(f"the dead-letter topic {topic} cannot be read: {exc}") from None
    finally:
        consumer.close()
    count.by_reason = dict(reasons)
    return count
