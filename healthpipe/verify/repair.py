"""`--repair`: publish every missing range again from Prometheus, through the producer's backfill path.

The ranges are re-read from Prometheus and published under the backfill's own transactional id (watermarks
untouched), then we wait until the consumer group has committed everything that was published (a running
consumer loads it; identical points already there are overwritten). Extra and mismatched points are only
reported, never deleted.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import TopicPartition

from healthpipe.common.config import HealthpipeConfig, QuerySettings
from healthpipe.common.errors import Retryable
from healthpipe.common.kafka import consumable_end, partitions_of, reader
from healthpipe.producer.backfill import publish_range
from healthpipe.verify.compare import QueryResult

log = logging.getLogger(__name__)
MERGE_GAP_MS = 60_000  # missing ranges closer than this are re-published as one window


def missing_spans(result: QueryResult) -> list[tuple[int, int]]:
    """The query's missing ranges over all series, merged: (start exclusive, end inclusive) in ms."""
    spans = sorted((a, b) for diff in result.series.values() for a, b, _ in diff.missing_ranges)
    merged: list[list[int]] = []
    for a, b in spans:
        if merged and a - merged[-1][1] <= MERGE_GAP_MS:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a - 1, b) for a, b in merged]


def repair(cfg: HealthpipeConfig, queries: list[QuerySettings], results: list[QueryResult],
           progress: bool = True) -> list[str]:
    """Re-publish what is missing and wait for the consumer group; returns one line per action taken."""
    done = []
    by_name = {q.name: q for q in queries}
    for result in results:
        for start, end in missing_spans(result):
            samples = publish_range(cfg, [by_name[result.name]], start, end, progress=progress)
            done.append(f"{result.name}: re-published ({start}, {end}] from Prometheus via the backfill path "
                        f"({samples} samples)")
    if done:
        _wait_for_group(cfg, cfg.verify.repair_timeout_seconds)
    return done


def _wait_for_group(cfg: HealthpipeConfig, timeout: float) -> None:
    """Until the consumer group has committed up to the topic's end offsets as they are now."""
    topic = cfg.kafka.topic
    consumer = reader(cfg, group_id=cfg.kafka.group_id)  # only to read the group's committed offsets
    try:
        partitions = partitions_of(consumer, topic)
        target = consumable_end(consumer, topic, partitions)
        deadline = time.monotonic() + timeout
        while True:
            committed = {tp.partition: tp.offset for tp in
                         consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=30)}
            behind = {p: (committed[p], target[p]) for p in partitions if target[p] > 0 and committed[p] < target[p]}
            if not behind:
                return
            if time.monotonic() > deadline:
                raise Retryable(f"consumer group {cfg.kafka.group_id!r} has not committed the re-published data "
                                f"within {timeout:.0f}s (partition: (committed, needed) {behind}); is a consumer "
                                f"running? The data is on the topic: verify again once it has caught up")
            time.sleep(1.0)
    finally:
        consumer.close()
