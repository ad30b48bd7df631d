"""Offsets lost to Kafka's retention: never silent.

If the consumer group falls further behind than the topic's retention (`kafka.retention`), Kafka deletes
records nobody has loaded; librdkafka then resets to the earliest offset (`auto.offset.reset=earliest`) and
carries on. That is data loss in the pipeline, so this watch names it:

- on assignment: the group's committed offset is below the partition's log start offset (the consumer was
  stopped past retention): the range [committed, log start) is gone;
- while running: a jump in the offsets we read that the partition's log start offset (reported by librdkafka's
  statistics) has since passed (a long hold while retention ran): the range [before the jump, min(after,
  log start)) is gone. Smaller jumps are transaction markers and aborted records, and are not counted.

Each loss is logged as an error naming the partition and the offset range, and counted in
`healthpipe_consumer_offsets_lost_total{topic,partition}`. `healthpipe verify --repair` fills the samples back
from Prometheus.
"""

from __future__ import annotations

import logging

from confluent_kafka import Consumer, KafkaException, TopicPartition

from healthpipe.consumer.metrics import ConsumerMetrics

log = logging.getLogger(__name__)


class RetentionWatch:
    def __init__(self, metrics: ConsumerMetrics):
        self.metrics = metrics
        self._next: dict[tuple[str, int], int] = {}  # the offset we expect to read next
        self._start: dict[tuple[str, int], int] = {}  # where reading began since the assignment
        self._gaps: dict[tuple[str, int], list[tuple[int, int]]] = {}  # jumps since the last statistics

    def assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> dict[tuple[str, int], int]:
        """Check new partitions; returns the group's committed offset of each (-1001 where none is)."""
        try:
            committed = consumer.committed(partitions, timeout=10)
        except KafkaException as exc:
            log.warning("retention_check_skipped error=%s", exc)
            return {}
        for tp in committed:
            if tp.offset < 0:
                continue  # nothing committed yet: a new group reads from the earliest offset by design
            try:
                low, _high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
            except KafkaException as exc:
                log.warning("retention_check_skipped partition=%s/%d error=%s", tp.topic, tp.partition, exc)
                continue
            if tp.offset < low:
                self._lost(tp.topic, tp.partition, tp.offset, low, "committed offset below the log start")
            self._next[(tp.topic, tp.partition)] = self._start[(tp.topic, tp.partition)] = max(tp.offset, low)
        return {(tp.topic, tp.partition): tp.offset for tp in committed}

    def revoked(self, partitions: set[tuple[str, int]]) -> None:
        for key in partitions:
            self._next.pop(key, None)
            self._start.pop(key, None)
            self._gaps.pop(key, None)

    def accepted(self, topic: str, partition: int, offset: int) -> None:
        key = (topic, partition)
        expected = self._next.get(key)
        if expected is not None and offset > expected:
            self._gaps.setdefault(key, []).append((expected, offset))
        self._start.setdefault(key, offset)
        self._next[key] = offset + 1

    def positions(self) -> dict[tuple[str, int], tuple[int, int]]:
        """Per owned partition: (where reading began, the next offset to read). Safe from another thread."""
        start, nxt = dict(self._start), dict(self._next)
        return {k: (start.get(k, n), n) for k, n in nxt.items()}

    def statistics(self, topic: str, partition: int, log_start: int) -> None:
        """librdkafka's view of the partition's log start offset (`lo_offset`), every statistics interval."""
        key = (topic, partition)
        for before, after in self._gaps.pop(key, []):
            if log_start > before:  # retention removed offsets we jumped over: not markers, records
                self._lost(topic, partition, before, min(after, log_start), "records deleted while we were behind")

    def _lost(self, topic: str, partition: int, first: int, end: int, why: str) -> None:
        log.error("offsets_lost partition=%s/%d offsets=[%d,%d) count=%d reason=%s (past kafka.retention; "
                  "run `healthpipe verify --repair` over the time range to fill the samples from Prometheus)",
                  topic, partition, first, end, end - first, why)
        self.metrics.offsets_lost.labels(topic, str(partition)).inc(end - first)
