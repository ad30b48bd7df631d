"""ConsumerService (the plan's SimpleETLPipeline, for process 2): Kafka → sink, as one member of a group.

Only the loop and the rebalance callbacks live here; the phases of a batch have rooms of their own:

    poll ──► OpenBatch (batch.py) ──dispatch──► Checkpoint (checkpoint.py) ──► Sink (sink.py)
                                                 in flight, in order, commit     InfluxDB, Parquet, ...
             Hold (hold.py): while the sink fails, pause, back off, retry, resume

One cycle: poll messages into the open batch; when it is full or old, dispatch it (prepare for the sink and
hand the write to a writer thread, so the sink ingests batch N while the loop reads and prepares N+1);
complete returned batches in order, which commits. A failure holds everything until the retry succeeds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from healthpipe.common.config import ConsumerSettings, HealthpipeConfig
from healthpipe.common.dead_letters import DeadLetter, DeadLetterWriter
from healthpipe.common.errors import Fatal, Malformed, Retryable
from healthpipe.common.kafka import ensure_topics, fail_if_refused, group_consumer, plain_producer
from healthpipe.common.messages import decode
from healthpipe.common.observability import StatusServer
from healthpipe.common.records import Source, TopicPartitionKey, earliest, topic_partitions
from healthpipe.common.retry import retry
from healthpipe.consumer.batch import OpenBatch
from healthpipe.consumer.checkpoint import Checkpoint, fmt
from healthpipe.consumer.hold import Hold
from healthpipe.consumer.metrics import ConsumerMetrics
from healthpipe.consumer.retention import RetentionWatch
from healthpipe.schema import scan_samples as SCAN_SAMPLES
from healthpipe.sinks.base import Sink

_COORDINATOR_MOVED = (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                      KafkaError.COORDINATOR_NOT_AVAILABLE)

log = logging.getLogger(__name__)


class ConsumerService:
    def __init__(self, cfg: HealthpipeConfig, *, sink: Sink[Any], metrics: ConsumerMetrics | None = None,
                 group_id: str | None = None, settings: ConsumerSettings | None = None):
        self.cfg = cfg
        self.settings = settings or cfg.consumer
        self.metrics = metrics or ConsumerMetrics()
        self.group_id = group_id or cfg.kafka.group_id
        self.sink: Sink[Any] = sink
        self.consumer: Consumer = None  # type: ignore[assignment]  # set by initialize()
        self.batch = OpenBatch()
        self.checkpoint: Checkpoint = None  # type: ignore[assignment]  # set by initialize()
        self.hold = Hold(self.metrics)
        self.retention = RetentionWatch(self.metrics)
        self._stop = threading.Event()
        self._fatal: BaseException | None = None
        self._last_message = time.monotonic()
        # Partitions we own, kept by the rebalance callbacks: safe to read from any thread.
        self.assigned: frozenset[TopicPartitionKey] = frozenset()
        self.status_server: StatusServer | None = None
        self.metrics.caches.caches = list(sink.caches())
        self.metrics.uncommitted.set_function(self._uncommitted_messages)
        self.metrics.writes_outstanding.set_function(
            lambda: self.checkpoint.writes_outstanding() if self.checkpoint is not None else 0)

    def _uncommitted_messages(self) -> int:
        """Offsets read and not committed, over the partitions we own (held in the open batch, in flight, or
        in a sink that buffers across batches); transaction markers among them count too."""
        committed = self.checkpoint.committed_offsets if self.checkpoint is not None else {}
        return sum(max(0, nxt - committed.get(tp, start)) for tp, (start, nxt) in self.retention.positions().items())

    # --- lifecycle (the plan's names) ----------------------------------------------------------------

    def initialize(self, sink_wait_seconds: float = 60) -> None:
        """Create topics, check the sink (waiting for it to come up), join the group."""
        ensure_topics(self.cfg)
        retry(self.sink.check, f"{self.sink.name}_check", give_up_after=sink_wait_seconds, stop=self._stop)
        dead_letters = DeadLetterWriter(plain_producer(self.cfg), self.cfg.kafka.dead_letter_topic,
                                        self.settings.dead_letter_timeout_seconds)
        self.checkpoint = Checkpoint(self.sink, dead_letters, self.metrics, self.settings.writers)
        self.consumer = group_consumer(self.cfg, self.group_id, **{
            "statistics.interval.ms": 5000, "stats_cb": self._on_stats, "error_cb": self._on_kafka_error})
        self.checkpoint.consumer = self.consumer
        self.consumer.subscribe([self.cfg.kafka.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)
        log.info("consumer_initialized topic=%s group=%s sink=%s", self.cfg.kafka.topic, self.group_id,
                 self.sink.name)

    def run_single_cycle(self, timeout: float = 0.5) -> int:
        """Poll once and move batches along; returns the number of messages consumed."""
        if self._fatal is not None:
            raise self._fatal
        if self.hold.active:
            # Paused: poll serves heartbeats-by-poll (max.poll.interval.ms) and rebalance callbacks.
            self.hold.keep_paused(self.consumer)
            self._poll_one(min(timeout, self.hold.seconds_left()) or 0.05)
            if self.hold.due():
                self._attempt(self.flush)
            return 0
        # Dispatch before consuming more: a message added now would void a prepare done ahead.
        if self._batch_due() and not self.checkpoint.busy() and not self._attempt(self._dispatch):
            return 0
        if self._batch_due() and self.checkpoint.busy():
            # Backpressure: the next batch is ready while the sink still takes the previous one. Prepare it now,
            # so that work overlaps the write, then wait for the writer in short steps. A step that times out
            # (a slow sink) polls once, which keeps max.poll.interval.ms from expiring and adds at most one
            # message (that voids the early prepare). No pause: it drops librdkafka's prefetch.
            self.batch.prepare(self.sink)
            if not self.checkpoint.wait_oldest(timeout):
                self._poll_one(0)
            return 0
        wanted = self.batch.messages_wanted(self.sink.batch_size, self.settings.poll_batch)
        if self.batch or self.checkpoint:
            timeout = min(timeout, 0.05)  # something to write or commit soon: don't sleep through it
        # poll() returns as soon as one message is there (consume() would sit out its whole timeout for a
        # short batch); then take what librdkafka already holds, without waiting. Each message is accepted
        # before the next call: a rebalance callback inside consume() must find every message returned so
        # far in the batch it flushes or abandons.
        first = self.consumer.poll(timeout)
        received = 0
        if first is not None:
            self._accept(first)
            rest = self.consumer.consume(wanted - 1, 0) if wanted > 1 else []
            for msg in rest:
                self._accept(msg)
            received = 1 + len(rest)
            self._last_message = time.monotonic()
        if self.checkpoint.oldest_returned() and not self._attempt(self.checkpoint.complete_returned):
            return received  # held: the next cycles retry with backoff; nothing else happens meanwhile
        # Caught up (Kafka had fewer messages than the batch has room for) and the sink idle: write now
        # rather than wait for batch_max_age_seconds. Under a backlog the writers are busy, so batches fill.
        caught_up = received < wanted
        if self.batch and not self.checkpoint.busy() and (caught_up or self._batch_due()):
            self._attempt(self._dispatch)
        return received

    def run_continuous(self, until_idle: float | None = None) -> None:
        """Run until stop(), a fatal error, or `until_idle` seconds without a new message."""
        while not self._stop.is_set():
            self.run_single_cycle()
            if not self.batch and not self.checkpoint and not self.hold.active:
                self._attempt(self._tick)
            if not self.assigned:
                self._last_message = time.monotonic()  # idle means "nothing to read", not "not joined yet"
            if (until_idle is not None and not self.batch and not self.checkpoint and not self.hold.active
                    and time.monotonic() - self._last_message >= until_idle):
                log.info("consumer_idle seconds=%.0f", until_idle)
                break

    def stop(self) -> None:
        self._stop.set()

    def close(self, grace: float = 20.0) -> None:
        """Flush and commit what we hold (within `grace`), then leave the group."""
        if self.consumer is not None:
            if self._fatal is None:
                # always, not only when a batch is open or in flight: a sink that buffers across batches (the
                # archive's open files) holds consumed records that only this flush makes durable and commits
                self._flush_within(grace)
            self.consumer.close()  # leaves the group; on_revoke runs with nothing held
            self.consumer = None  # type: ignore[assignment]
        if self.checkpoint is not None:
            self.checkpoint.close()
        self.sink.close()
        if self.status_server is not None:
            self.status_server.stop()

    def ready(self) -> bool:
        return self.consumer is not None and self._fatal is None and not self.hold.active

    def not_ready_reason(self) -> str:
        if self._fatal is not None:
            return f"stopping: {self._fatal}"
        if self.hold.active:
            held = self.batch.samples + (self.checkpoint.held_samples() if self.checkpoint else 0)
            return f"holding {held} samples, uncommitted, after {self.hold.attempts} failed attempts: " \
                   f"{self.hold.last_error}"
        return "not in the consumer group yet" if self.consumer is None else ""

    # --- one message -----------------------------------------------------------------------------------

    def _batch_due(self) -> bool:
        return self.batch.due(self.sink.batch_size, self.settings.batch_max_age_seconds)

    def _poll_one(self, timeout: float) -> None:
        """Poll without consuming a batch: serves rebalance callbacks and max.poll.interval.ms. A message
        it returns (one fetched before a pause, say) joins the open batch like any other: never dropped."""
        msg = self.consumer.poll(timeout)
        if msg is not None:
            self._accept(msg)

    def _accept(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.error("consume_error error=%s", err)
                if err.fatal():
                    raise KafkaException(err)
                if err.code() in _COORDINATOR_MOVED and "committed offsets" in err.str():
                    self._fetch_committed_again()
            return
        self.metrics.messages_consumed.inc()
        source = Source.of(msg)
        self.retention.accepted(source.topic, source.partition, source.offset)
        try:
            window = decode(msg.value(), msg.headers(), self.settings.max_message_bytes, SCAN_SAMPLES)
        except Malformed as exc:
            self.batch.reject(DeadLetter(exc.reason, exc.detail, source))
            return
        self.batch.add(window, source)
        self.metrics.samples_consumed.inc(len(window.samples))

    def _fetch_committed_again(self) -> None:
        """librdkafka #5586: an OffsetFetch answered NOT_COORDINATOR for the whole request leaves the newly assigned
        partitions waiting for their committed offsets for ever (the fetcher never starts; seen after a rolling
        broker restart). Assigning them again asks again. Only partitions without a position are touched: nothing
        of theirs has reached this process, so nothing of theirs is in flight."""
        waiting = [tp for tp in self.consumer.position(self.consumer.assignment()) if tp.offset < 0]
        if waiting:
            log.warning("committed_offsets_fetched_again partitions=%s", fmt(waiting))
            self.consumer.incremental_unassign(waiting)
            self.consumer.incremental_assign([TopicPartition(tp.topic, tp.partition) for tp in waiting])

    # --- flushing --------------------------------------------------------------------------------------

    def flush(self, partitions: set[TopicPartitionKey] | None = None) -> None:
        """Make everything consumed durable, then commit it; synchronous (shutdown, revoke, retries).

        The in-flight batches complete in order (checkpoint.py lists the steps), then the open batch is
        dispatched and completed too, then a sink that buffers across batches makes the rest durable (only
        what it holds for `partitions`, when given: a revoke).
        """
        self.checkpoint.drain()
        if self.batch:
            self._dispatch()
            self.checkpoint.drain()
        durable = self.sink.flush(partitions)
        if durable:
            self.checkpoint.commit(topic_partitions(durable))

    def _tick(self) -> None:
        """Idle: a sink that buffers across batches seals what is due; commit what became durable, and what
        Kafka refused to commit before."""
        durable = self.sink.tick()
        if durable:
            self.checkpoint.commit(topic_partitions(durable))
        self.checkpoint.retry_owed(self.assigned)

    def _dispatch(self) -> None:
        self.checkpoint.make_room()  # may raise: then the open batch simply stays open
        batch, self.batch = self.batch, OpenBatch()
        self.checkpoint.dispatch(batch)

    def _attempt(self, step: Callable[[], None]) -> bool:
        """Run a flushing step; on a Retryable failure hold what is in flight and back off."""
        try:
            step()
        except Retryable as exc:
            self.hold.start_or_extend(self.consumer, exc, self.checkpoint.held_samples() + self.batch.samples)
            return False
        except Fatal as exc:
            self._fatal = exc
            raise
        self.hold.release(self.consumer)
        return True

    def _flush_within(self, seconds: float, partitions: set[TopicPartitionKey] | None = None) -> bool:
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.flush(partitions)
                return True
            except Retryable as exc:
                if time.monotonic() >= deadline:
                    log.error("flush_abandoned error=%s samples=%d (not committed: will be re-delivered)",
                              exc, self.batch.samples + self.checkpoint.held_samples())
                    return False
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            except Fatal as exc:
                log.error("flush_abandoned error=%s", exc)
                return False

    def _abandon(self, lost: set[TopicPartitionKey], reason: str) -> None:
        """Drop everything uncommitted; rewind the partitions we keep so their messages are read again."""
        first = self.checkpoint.abandon()
        earliest(first, self.batch.offsets.rewind_points().items())
        earliest(first, self.sink.drop(set(first) | lost).items())
        rewind = topic_partitions({key: offset for key, offset in first.items() if key not in lost})
        log.warning("batch_abandoned reason=%s messages=%d rewind=%s", reason, len(self.batch), fmt(rewind))
        self.batch = OpenBatch()
        for tp in rewind:
            try:
                self.consumer.seek(tp)
            except KafkaException as exc:
                log.error("rewind_failed partition=%s/%d error=%s", tp.topic, tp.partition, exc)
        self.hold.release(self.consumer)

    # --- rebalance callbacks -----------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """New partitions: nothing to do but note them; a hold pauses them on the next cycle."""
        self.metrics.rebalances.labels("assign").inc()
        self.assigned = self.assigned | {(tp.topic, tp.partition) for tp in partitions}
        log.info("partitions_assigned partitions=%s", fmt(partitions))
        committed = self.retention.assigned(consumer, partitions)
        self.sink.assigned(committed)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions are leaving cleanly: flush and commit within the deadline, else abandon what is held.

        After this returns another member may read these partitions from our last commit, so anything
        not committed here will be re-delivered there (and overwrite identical points)."""
        self.metrics.rebalances.labels("revoke").inc()
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self.assigned = self.assigned - revoked
        self.retention.revoked(revoked)
        self.checkpoint.forget(revoked)
        log.info("partitions_revoked partitions=%s", fmt(partitions))
        # Flushed even when no batch is open or in flight: a sink that buffers across batches may hold records
        # of these partitions, and the next owner reads them again from our last commit
        if self._fatal is None and self._flush_within(self.settings.revoke_deadline_seconds, revoked):
            self.sink.drop(revoked)  # flushed and committed: nothing of theirs stays with us
            self.hold.release(self.consumer)
            return
        self._abandon(revoked, "revoke_deadline")

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions were taken from us (session timeout): someone else may own them, so never commit."""
        self.metrics.rebalances.labels("lost").inc()
        lost = {(tp.topic, tp.partition) for tp in partitions}
        self.assigned = self.assigned - lost
        self.retention.revoked(lost)
        self.checkpoint.forget(lost)
        log.warning("partitions_lost partitions=%s", fmt(partitions))
        if self.batch or self.checkpoint:
            self._abandon(lost, "partitions_lost")

    # --- librdkafka callbacks ------------------------------------------------------------------------------

    def _on_stats(self, stats_json: str) -> None:
        stats = orjson.loads(stats_json)
        for topic, t in stats.get("topics", {}).items():
            for pid, p in t.get("partitions", {}).items():
                if pid == "-1":
                    continue
                if p.get("consumer_lag", -1) >= 0:
                    self.metrics.lag.labels(topic, pid).set(p["consumer_lag"])
                if p.get("lo_offset", -1) >= 0:
                    self.retention.statistics(topic, int(pid), p["lo_offset"])

    def _on_kafka_error(self, err: KafkaError) -> None:
        fail_if_refused(self.cfg.kafka, err)
        log.warning("kafka_error error=%s", err)
