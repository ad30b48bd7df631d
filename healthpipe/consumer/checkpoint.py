"""The checkpoint: batches handed to the sink, written up to `writers` at a time, committed strictly in order.

A writer whose batch returns before an older one's takes the next batch at once (its own waits, uncommitted,
for the older ones; at most 2 × writers batches are held): a slow request does not idle the other writers.

Completing the oldest in-flight batch, in this order (each step must succeed before the next):

    1. its write has returned: every item is durable in the sink, or refused for good (Rejected);
       a write that failed is retried here, on the caller's thread, from where it stopped;
    2. its dead letters (malformed messages, refused items) are delivered and every delivery checked;
    3. its offsets are committed, synchronously: the batch's own, or what the sink reports durable
       (a sink that buffers across batches commits only what it has made durable);
    4. it leaves the queue.

A failure in 1-2 raises (Retryable, or Fatal) and leaves the batch at the head of the queue, so nothing is
committed past data the sink does not have, and no later batch completes before it:

    in flight:  [b1: write failed] [b2: written] [b3: writing]      commits: none until b1 succeeds

A commit Kafka refuses in 3 (typically ILLEGAL_GENERATION during a rebalance that leaves us the partition) does
not hold the batch, whose data is durable; the offset is *owed* and retried while idle (`retry_owed`) until it
or a later commit lands, or the partition leaves us. Without that, a partition that receives nothing more
would show the old lag forever.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Set
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from healthpipe.common.dead_letters import DeadLetter, DeadLetterWriter
from healthpipe.common.records import Source, TopicPartitionKey, earliest, topic_partitions
from healthpipe.consumer.batch import OpenBatch
from healthpipe.consumer.metrics import ConsumerMetrics
from healthpipe.consumer.offsets import OffsetTracker
from healthpipe.sinks.base import Prepared, Sink, WriteOutcome, drop_summary

log = logging.getLogger(__name__)

# Batches in flight per writer: one being written, one returned early and waiting for an older one to commit
HELD_PER_WRITER = 2


@dataclass
class InFlight:
    """A dispatched batch: prepared, handed to a writer, not yet committed."""

    sources: list[Source]
    letters: list[DeadLetter]
    offsets: OffsetTracker
    prepared: Prepared
    write: Future[WriteOutcome] | None  # the writer thread's job; None once collected (a retry runs inline)

    def returned(self) -> bool:
        return self.write is None or self.write.done()


class Checkpoint:
    def __init__(self, sink: Sink[Any], dead_letters: DeadLetterWriter, metrics: ConsumerMetrics, writers: int):
        self.sink = sink
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.writers = writers
        self.consumer: Consumer | None = None  # set once the consumer exists (it is created after the sink)
        self.inflight: deque[InFlight] = deque()
        self.committed_offsets: dict[TopicPartitionKey, int] = {}  # what this member committed, per partition
        self.owed: dict[TopicPartitionKey, int] = {}  # durable, but Kafka refused the commit: retried when idle
        self._owed_retry_at = 0.0
        self._pool = ThreadPoolExecutor(max_workers=writers, thread_name_prefix=f"{sink.name}-writer")

    def __bool__(self) -> bool:
        return bool(self.inflight)

    def held_samples(self) -> int:
        return sum(b.prepared.samples_in for b in list(self.inflight))

    def messages(self) -> int:
        """Messages in flight (read from the status server's thread too: a snapshot of the queue)."""
        return sum(len(b.sources) + len(b.letters) for b in list(self.inflight))

    def writes_outstanding(self) -> int:
        return sum(1 for b in list(self.inflight) if b.write is not None and not b.write.done())

    # --- state the loop asks about ----------------------------------------------------------------------

    def oldest_returned(self) -> bool:
        """The oldest batch's write has returned (or failed and waits for its retry)."""
        return bool(self.inflight) and self.inflight[0].returned()

    def busy(self) -> bool:
        """No batch can be dispatched before the oldest write (the next to commit) returns, which it has not."""
        return not self.oldest_returned() and not self._writer_free()

    def _writer_free(self) -> bool:
        """A writer is free for the next batch: fewer writes running than writers, and nothing holds new batches
        back (see _held_back)."""
        return not self._held_back() and self.writes_outstanding() < self.writers

    def _held_back(self) -> bool:
        """Only the oldest batch's completion lets a new one in: 2 × writers batches are held, or a write failed
        (a failed batch is retried in order first: nothing new is written meanwhile)."""
        return len(self.inflight) >= HELD_PER_WRITER * self.writers or any(
            b.write is not None and b.write.done() and b.write.exception() is not None for b in self.inflight)

    def wait_oldest(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the oldest write to return (or, while only busy writers keep the next batch
        back, for any write); True if one did."""
        if not self.inflight or self.oldest_returned():
            return True
        running = [b.write for b in self.inflight if b.write is not None and not b.write.done()]
        if self._held_back():
            running = [self.inflight[0].write] if self.inflight[0].write is not None else []
        done, _ = wait(running, timeout=timeout, return_when=FIRST_COMPLETED)
        return bool(done)

    # --- moving batches along ---------------------------------------------------------------------------

    def make_room(self) -> None:
        """Complete what has returned (oldest first), and the oldest batch too (waiting for it) until a writer is
        free. A writer whose batch returned before an older one's takes the next batch at once: its batch waits,
        uncommitted, for the older ones (commits stay in order)."""
        self.complete_returned()
        while not self._writer_free():
            self.complete_oldest()

    def dispatch(self, batch: OpenBatch) -> None:
        """Hand `batch` to a writer; call make_room() first."""
        assert self._writer_free(), "dispatch without make_room()"
        prepared = batch.prepare(self.sink)
        for reason, n in prepared.dropped.items():  # once: a batch is dispatched once
            self.metrics.samples_dropped.labels(reason).inc(n)
        job = self._pool.submit(self._timed_write, prepared)
        self.inflight.append(InFlight(batch.sources, batch.letters, batch.offsets, prepared, job))

    def _timed_write(self, prepared: Prepared) -> WriteOutcome:
        t0 = time.perf_counter()
        try:
            return self.sink.write(prepared)
        finally:
            self.metrics.write_seconds.observe(time.perf_counter() - t0)

    def complete_returned(self) -> None:
        """Complete the in-flight batches whose writes have returned, oldest first, up to one still running."""
        while self.oldest_returned():
            self.complete_oldest()

    def drain(self) -> None:
        """Complete every in-flight batch (waiting for running writes): shutdown, revoke, retries."""
        while self.inflight:
            self.complete_oldest()

    def complete_oldest(self) -> None:
        """Steps 1-4 for the oldest in-flight batch; raises (keeping it in flight) on failure."""
        batch = self.inflight[0]
        # 1. the sink has it (a failed write surfaces here; the retry continues where the sink stopped)
        if batch.write is not None:
            job, batch.write = batch.write, None
            outcome = job.result()
        else:
            outcome = self._timed_write(batch.prepared)
        # 2. dead letters delivered (re-sent whole if this step failed before: at-least-once)
        refused = [DeadLetter(self.sink.name + "_rejected", r.detail, batch.sources[r.window], r.payload, r.status)
                   for r in outcome.rejected]
        self.dead_letters.deliver(batch.letters + refused)
        for letter in batch.letters + refused:
            self.metrics.dead_letters.labels(letter.reason).inc()
        # 3. offsets committed
        self.commit(self._committable(batch))
        # 4. done
        self.inflight.popleft()
        self.metrics.samples_written.inc(outcome.written)
        self.metrics.batch_samples.observe(batch.prepared.samples_in)
        log.info("batch_flushed messages=%d samples=%d written=%d rejected=%d dead_letters=%d dropped=%d dropped_by=%s",
                 len(batch.sources) + len(batch.letters), batch.prepared.samples_in, outcome.written,
                 len(outcome.rejected), len(batch.letters) + len(refused), sum(batch.prepared.dropped.values()),
                 drop_summary(batch.prepared.dropped))

    def _committable(self, batch: InFlight) -> list[TopicPartition]:
        durable = self.sink.durable()
        if durable is None:
            return batch.offsets.to_commit()
        return topic_partitions(durable)

    def commit(self, offsets: list[TopicPartition]) -> None:
        if not offsets:
            return
        assert self.consumer is not None
        try:
            results = self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # The data is in the sink; an uncommitted offset only means a re-delivery, which overwrites
            # identical points. Typical cause: a rebalance meanwhile. Owed: retried while we keep the partition.
            log.warning("commit_failed error=%s offsets=%s", exc.args[0], fmt(offsets))
            self.metrics.commit_failures.inc()
            for tp in offsets:
                self._owe(tp)
            return
        done = {}
        for tp in results or []:
            key = (tp.topic, tp.partition)
            if tp.error:
                log.warning("commit_failed partition=%s/%d error=%s", tp.topic, tp.partition, tp.error)
                self.metrics.commit_failures.inc()
                self._owe(tp)
            else:
                self.metrics.committed.labels(tp.topic, str(tp.partition)).set(tp.offset)
                done[key] = tp.offset
                self.committed_offsets[key] = tp.offset
                if self.owed.get(key, tp.offset) <= tp.offset:
                    self.owed.pop(key, None)
        if done:
            self.sink.committed(done)
        log.debug("committed offsets=%s", fmt(offsets))

    def _owe(self, tp: TopicPartition) -> None:
        key = (tp.topic, tp.partition)
        self.owed[key] = max(self.owed.get(key, tp.offset), tp.offset)

    def retry_owed(self, assigned: Set[TopicPartitionKey], every: float = 1.0) -> None:
        """Idle: commit again what Kafka refused, for the partitions we still own (at most once per `every` s)."""
        self.forget(set(self.owed) - assigned)
        if not self.owed or time.monotonic() < self._owed_retry_at:
            return
        self._owed_retry_at = time.monotonic() + every
        log.info("commit_retry offsets=%s", ",".join(f"{p}@{o}" for (_, p), o in sorted(self.owed.items())))
        self.commit(topic_partitions(self.owed))

    def forget(self, partitions: set[TopicPartitionKey]) -> None:
        """The partitions left us: their new owner re-reads from the last commit that landed."""
        for key in partitions:
            self.owed.pop(key, None)

    def abandon(self) -> dict[TopicPartitionKey, int]:
        """Forget every in-flight batch; returns the first offset each held per partition (to seek back to).

        An abandoned write may still finish on its writer thread: harmless, only completion commits."""
        first: dict[TopicPartitionKey, int] = {}
        for batch in self.inflight:
            earliest(first, batch.offsets.rewind_points().items())
        self.inflight.clear()
        return first

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def fmt(tps: list[TopicPartition]) -> str:
    return ",".join(f"{tp.partition}@{tp.offset}" for tp in tps) or "-"
