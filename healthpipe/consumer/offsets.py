"""Which offsets a batch may commit.

We record the messages we actually processed, never offset arithmetic: under transactions a
partition's offsets have holes where commit/abort markers sit, so `last + 1` of what we saw is right
and `first + count` is not. A batch is flushed whole, in consumption order, so after a successful
flush the contiguous processed prefix of each partition is everything up to its last message.

    partition 0:  [40 41 42 (43=commit marker) 44 45]  → commit 46
                   └──────── processed ──────────┘
"""

from __future__ import annotations

from confluent_kafka import TopicPartition

from healthpipe.common.records import TopicPartitionKey, topic_partitions


class OffsetTracker:
    def __init__(self) -> None:
        self._first: dict[tuple[str, int], int] = {}
        self._last: dict[tuple[str, int], int] = {}

    def record(self, topic: str, partition: int, offset: int) -> None:
        tp = (topic, partition)
        last = self._last.get(tp)
        if last is not None and offset <= last:
            # Consumption order is offset order within a partition; anything else is a bug upstream.
            raise AssertionError(f"offset went backwards on {topic}/{partition}: {offset} after {last}")
        self._first.setdefault(tp, offset)
        self._last[tp] = offset

    def to_commit(self) -> list[TopicPartition]:
        """The next offset to read, per partition: the contract of Kafka's committed offset."""
        return topic_partitions({key: last + 1 for key, last in self._last.items()})

    def rewind_points(self) -> dict[TopicPartitionKey, int]:
        """The first uncommitted offset per partition: where to seek back when a batch is abandoned."""
        return dict(self._first)

    def partitions(self) -> set[tuple[str, int]]:
        return set(self._last)

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        for tp in partitions:
            self._first.pop(tp, None)
            self._last.pop(tp, None)

    def clear(self) -> None:
        self._first.clear()
        self._last.clear()

    def __bool__(self) -> bool:
        return bool(self._last)
