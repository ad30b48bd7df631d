"""Kafka records and partitions as the pipeline passes them around: the record a window came from (`Source`),
partitions as plain `(topic, partition)` keys, and the two idioms every offset-keeping module needs (a commit
list from a key → offset map, and the earliest offset to rewind to)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message, TopicPartition

TopicPartitionKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Source:
    """The Kafka record a window came from: what a dead letter carries and a rewind goes back to."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def of(cls, msg: Message) -> Source:
        headers: Any = msg.headers() or ()
        return cls(msg.topic() or "", msg.partition() or 0, msg.offset() or 0, msg.key(), msg.value(),
                   tuple(headers))


def topic_partitions(offsets: Mapping[TopicPartitionKey, int]) -> list[TopicPartition]:
    """`{(topic, partition): offset}` as librdkafka's list, in partition order (what commit and seek take)."""
    return [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())]


def earliest(into: dict[TopicPartitionKey, int], offsets: Iterable[tuple[TopicPartitionKey, int]]) -> None:
    """Keep in `into` the lowest offset seen per partition: where a rewind must go back to so that nothing of
    what was dropped is skipped."""
    for key, offset in offsets:
        current = into.get(key)
        if current is None or offset < current:
            into[key] = offset
