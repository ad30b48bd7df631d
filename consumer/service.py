"""ConsumerService (the plan's SimpleETLPipeline, for process 2): Kafka → clean → InfluxDB.

One explicit loop: poll messages → accumulate a batch → when it is full or old, dispatch it: transform it
and hand its write to a single writer thread, so InfluxDB ingests batch N while the loop reads and
transforms batch N+1. Batches complete in order and only completion commits, and only what InfluxDB
(or the dead-letter topic) has acknowledged. While
InfluxDB is unavailable the batch is held, the partitions are paused and the loop keeps polling, so
the consumer stays in its group; the held batch is retried with backoff and the partitions resume
once it is written. Nothing is committed past unwritten data and nothing is dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from common import logs
from common.config import HealthpipeConfig, load_config
from common.errors import HealthpipeError, InfluxAuthError, InfluxUnavailableError
from common.kafka import ensure_topics, group_consumer, plain_producer
from common.messages import MalformedMessage, SeriesWindow, decode
from common.observability import StatusServer
from common.process import run_service
from consumer.dead_letters import DeadLetter, DeadLetterError, DeadLetterWriter
from consumer.loader import InfluxDBLoader, WriteResult, backoff
from consumer.metrics import ConsumerMetrics
from consumer.offsets import OffsetTracker
from consumer.transformer import DataTransformer, TransformResult, drop_summary

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Source:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple


@dataclass
class Batch:
    windows: list[SeriesWindow] = field(default_factory=list)
    sources: list[_Source] = field(default_factory=list)
    offsets: OffsetTracker = field(default_factory=OffsetTracker)
    samples: int = 0
    started: float = field(default_factory=time.monotonic)
    transformed: TransformResult | None = None  # kept across retries: transform once
    written_upto: int = 0  # lines already acknowledged by InfluxDB in a partly retried flush
    write_result: WriteResult = field(default_factory=WriteResult)
    dead_lettered: int = 0  # how many of write_result.rejected went to the dead-letter topic already
    write: Future | None = None  # the writer thread's job, while in flight

    def __bool__(self) -> bool:
        return bool(self.offsets)


class ConsumerService:
    def __init__(self, cfg: HealthpipeConfig, metrics: ConsumerMetrics | None = None,
                 group_id: str | None = None, bucket: str | None = None):
        self.cfg = cfg
        self.metrics = metrics or ConsumerMetrics()
        self.group_id = group_id or cfg.kafka.group_id
        influx = cfg.load.influxdb if bucket is None else cfg.load.influxdb.model_copy(update={"bucket": bucket})
        self.loader = InfluxDBLoader(influx)
        self.transformer = DataTransformer(cfg.transform)
        self.consumer: Consumer = None  # type: ignore[assignment]  # set by initialize()
        self.dead_letters: DeadLetterWriter | None = None
        self.batch = Batch()  # the open batch, accumulating
        # Dispatched batches, oldest first: written (or being written) but not yet committed. Up to
        # consumer.writers are written at once; they complete and commit strictly in this order.
        self.inflight: deque[Batch] = deque()
        self._writer = ThreadPoolExecutor(max_workers=cfg.consumer.writers, thread_name_prefix="influx-writer")
        self._held_attempts = 0
        self._retry_at = 0.0
        self._stop = threading.Event()
        self._fatal: BaseException | None = None
        self._last_message = time.monotonic()
        # Partitions we own, kept by the rebalance callbacks: safe to read from any thread.
        self.assigned: frozenset[tuple[str, int]] = frozenset()
        self.status_server: StatusServer | None = None

    # --- lifecycle (the plan's names) ----------------------------------------------------------------

    def initialize(self, influx_wait_seconds: float = 60) -> None:
        """Create topics, check the bucket (waiting for InfluxDB to come up), join the group."""
        ensure_topics(self.cfg)
        deadline = time.monotonic() + influx_wait_seconds
        attempt = 0
        while True:
            try:
                self.loader.check_bucket()  # InfluxAuthError (bad token, no bucket) propagates: fatal
                break
            except InfluxUnavailableError as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("influx_not_ready error=%s; waiting", exc)
                time.sleep(backoff(attempt))
                attempt += 1
        self.dead_letters = DeadLetterWriter(plain_producer(self.cfg), self.cfg.kafka.dead_letter_topic)
        self.consumer = group_consumer(self.cfg, self.group_id, **{
            "statistics.interval.ms": 5000, "stats_cb": self._on_stats, "error_cb": self._on_kafka_error})
        self.consumer.subscribe([self.cfg.kafka.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)
        log.info("consumer_initialized topic=%s group=%s bucket=%s", self.cfg.kafka.topic, self.group_id,
                 self.loader.settings.bucket)

    def run_single_cycle(self, timeout: float = 0.5) -> int:
        """Poll once and flush if due; returns the number of messages consumed."""
        if self._fatal is not None:
            raise self._fatal
        if self._held():
            # Paused: poll serves heartbeats-by-poll (max.poll.interval.ms) and rebalance callbacks.
            self.consumer.pause(self.consumer.assignment())
            self._poll_one(min(timeout, max(0.0, self._retry_at - time.monotonic())) or 0.05)
            if time.monotonic() >= self._retry_at:
                self._attempt(self.flush)
            return 0
        # Dispatch before consuming more: a message added now would void a transform done ahead.
        if self._batch_due() and not self._writer_busy() and not self._attempt(self._dispatch):
            return 0
        if self._batch_due() and self._writer_busy():
            # Backpressure: the next batch is ready while InfluxDB still takes the previous one. Transform it
            # now, so that work overlaps the write, then wait for the writer in short steps. A step that
            # times out (a slow InfluxDB) polls once, which keeps max.poll.interval.ms from expiring and adds
            # at most one message (that voids the early transform). No pause: it drops librdkafka's prefetch.
            if self.batch.transformed is None:
                self.batch.transformed = self.transformer.transform(self.batch.windows)
            oldest = self.inflight[0].write
            assert oldest is not None  # _writer_busy() says so
            done, _ = wait([oldest], timeout=timeout)
            if not done:
                self._poll_one(0)
            return 0
        wanted = self._messages_wanted()
        # poll() returns as soon as one message is there (consume() would sit out its whole timeout for a
        # short batch); then take what librdkafka already holds, without waiting.
        if self.batch or self.inflight:
            timeout = min(timeout, 0.05)  # something to write or commit soon: don't sleep through it
        # Each call is accepted before the next: a rebalance callback inside consume() must find every
        # message returned so far in the batch it flushes or abandons.
        first = self.consumer.poll(timeout)
        received = 0
        if first is not None:
            self._accept(first)
            rest = self.consumer.consume(wanted - 1, 0) if wanted > 1 else []
            for msg in rest:
                self._accept(msg)
            received = 1 + len(rest)
            self._last_message = time.monotonic()
        if self._oldest_returned() and not self._attempt(self._complete_returned):
            return received  # held: the next cycles retry with backoff; nothing else happens meanwhile
        # Caught up (Kafka had fewer messages than the batch has room for) and InfluxDB idle: write now
        # rather than wait for batch_max_age_seconds. Under a backlog the writer is busy, so batches fill.
        caught_up = received < wanted
        if self.batch and not self._writer_busy() and (caught_up or self._batch_due()):
            self._attempt(self._dispatch)
        return received

    def _writer_busy(self) -> bool:
        """Every writer is taken and the oldest write (the next to commit) is still running."""
        return len(self.inflight) >= self.cfg.consumer.writers and not self._oldest_returned()

    def _oldest_returned(self) -> bool:
        """The oldest in-flight batch's write has returned, or failed and waits for its retry (write None)."""
        if not self.inflight:
            return False
        write = self.inflight[0].write
        return write is None or write.done()

    def _batch_due(self) -> bool:
        return bool(self.batch) and (self.batch.samples >= self.loader.settings.batch_size or
                                     time.monotonic() - self.batch.started >= self.cfg.consumer.batch_max_age_seconds)

    def _poll_one(self, timeout: float) -> None:
        """Poll without consuming a batch: serves rebalance callbacks and max.poll.interval.ms. A message
        it returns (one fetched before a pause, say) joins the open batch like any other: never dropped."""
        msg = self.consumer.poll(timeout)
        if msg is not None:
            self._accept(msg)

    def _messages_wanted(self) -> int:
        """Ask Kafka for about as many messages as the batch has room for, so memory stays near batch_size."""
        room = self.loader.settings.batch_size - self.batch.samples
        per_message = self.batch.samples / len(self.batch.sources) if self.batch.sources else 100.0
        return max(1, min(self.cfg.consumer.poll_batch, int(room / max(per_message, 1.0)) + 1))

    def run_continuous(self, until_idle: float | None = None) -> None:
        """Run until stop(), a fatal error, or `until_idle` seconds without a new message."""
        while not self._stop.is_set():
            self.run_single_cycle()
            if not self.assigned:
                self._last_message = time.monotonic()  # idle means "nothing to read", not "not joined yet"
            if (until_idle is not None and not self.batch and not self.inflight and not self._held()
                    and time.monotonic() - self._last_message >= until_idle):
                log.info("consumer_idle seconds=%.0f", until_idle)
                break

    def stop(self) -> None:
        self._stop.set()

    def close(self, grace: float = 20.0) -> None:
        """Flush and commit what we hold (within `grace`), then leave the group."""
        if self.consumer is not None:
            if (self.batch or self.inflight) and self._fatal is None:
                self._flush_within(grace)
            self.consumer.close()  # leaves the group; on_revoke runs with an empty batch
            self.consumer = None  # type: ignore[assignment]
        self._writer.shutdown(wait=True)
        self.loader.close()
        if self.status_server is not None:
            self.status_server.stop()

    def ready(self) -> bool:
        return self.consumer is not None and self._fatal is None and not self._held()

    # --- one message -----------------------------------------------------------------------------------

    def _accept(self, msg) -> None:
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                log.error("consume_error error=%s", msg.error())
                if msg.error().fatal():
                    raise KafkaException(msg.error())
            return
        if not self.batch:
            self.batch.started = time.monotonic()  # a batch's age counts from its first message
        self.batch.offsets.record(msg.topic(), msg.partition(), msg.offset())
        self.metrics.messages_consumed.inc()
        source = _Source(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                         tuple(msg.headers() or ()))
        try:
            window = decode(msg.value(), msg.headers(), self.cfg.consumer.max_message_bytes)
        except MalformedMessage as exc:
            self._dead_letter(source, exc.reason, exc.detail)
            return
        self.batch.windows.append(window)
        self.batch.sources.append(source)
        self.batch.samples += len(window.samples)
        self.batch.transformed = None  # a transform done ahead of dispatch no longer covers the batch
        self.metrics.samples_consumed.inc(len(window.samples))

    def _dead_letter(self, source: _Source, reason: str, detail: str, value: bytes | None = None,
                     status: int | None = None) -> None:
        assert self.dead_letters is not None
        self.dead_letters.send(DeadLetter(reason, detail, source.topic, source.partition, source.offset,
                                          source.key, source.value if value is None else value, source.headers,
                                          status))
        self.metrics.dead_letters.labels(reason).inc()

    # --- flushing --------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Make everything consumed durable, then commit it; synchronous (shutdown, revoke, retries).

        In order: complete the in-flight batches (below), then dispatch the open batch and complete it too.
        Completing a batch means:
        1. its lines are all written to InfluxDB (by the writer thread, or here when retrying); lines
           InfluxDB rejects (400/422, or 413 on a single point) are collected with status and body;
        2. the rejected lines go to the dead-letter topic, and every dead letter's delivery is checked;
        3. its processed offsets are committed, synchronously.
        A failure in 1-2 raises and leaves the batch in flight (nothing committed) for the next attempt.
        """
        while self.inflight:
            self._complete_oldest()
        if self.batch:
            self._dispatch()
            while self.inflight:
                self._complete_oldest()

    def _dispatch(self) -> None:
        """Hand the open batch to a writer thread (when one is free: the oldest in flight completes first)."""
        self._complete_returned()
        if len(self.inflight) >= self.cfg.consumer.writers:
            self._complete_oldest()
        batch, self.batch = self.batch, Batch()
        if batch.transformed is None:
            batch.transformed = self.transformer.transform(batch.windows)
        for reason, n in batch.transformed.dropped.items():  # once: a batch is dispatched once
            self.metrics.samples_dropped.labels(reason).inc(n)
        batch.write = self._writer.submit(self._write_lines, batch)
        self.inflight.append(batch)

    def _write_lines(self, batch: Batch) -> None:
        """Write the batch's remaining lines in chunks of batch_size (writer thread, or main thread on retry)."""
        assert batch.transformed is not None
        lines = batch.transformed.lines
        size = self.loader.settings.batch_size
        while batch.written_upto < len(lines):
            chunk = lines[batch.written_upto:batch.written_upto + size]
            t0 = time.perf_counter()
            written = self.loader.write(chunk)
            self.metrics.write_seconds.observe(time.perf_counter() - t0)
            batch.write_result.written += written.written
            batch.write_result.rejected.extend(written.rejected)
            batch.written_upto += len(chunk)

    def _complete_returned(self) -> None:
        """Complete the in-flight batches whose writes have returned, oldest first, up to one still running.
        A failed one is retried here, so nothing is dispatched past a batch that is not in InfluxDB."""
        while self._oldest_returned():
            self._complete_oldest()

    def _complete_oldest(self) -> None:
        """Steps 1-3 of `flush()` for the oldest in-flight batch; raises (keeping it in flight) on failure."""
        batch = self.inflight[0]
        if batch.write is not None:
            job, batch.write = batch.write, None
            job.result()  # the writer's error, if any, surfaces here; a retry continues from written_upto
        self._write_lines(batch)
        self._dead_letter_rejected(batch)
        assert self.dead_letters is not None
        self.dead_letters.flush()
        self._commit(batch)
        self.inflight.popleft()
        assert batch.transformed is not None
        self.metrics.samples_written.inc(batch.write_result.written)
        self.metrics.batch_samples.observe(batch.transformed.samples_in)
        log.info("batch_flushed messages=%d samples=%d written=%d rejected=%d %s",
                 len(batch.sources), batch.transformed.samples_in, batch.write_result.written,
                 len(batch.write_result.rejected), drop_summary(batch.transformed.dropped))

    def _dead_letter_rejected(self, batch: Batch) -> None:
        new = batch.write_result.rejected[batch.dead_lettered:]
        if not new:
            return
        assert batch.transformed is not None
        index = {line: i for i, line in enumerate(batch.transformed.lines)}
        for rejected in new:
            source = batch.sources[batch.transformed.sources[index[rejected.line]]]
            self._dead_letter(source, "influx_rejected", rejected.body, value=rejected.line.encode(),
                              status=rejected.status)
        batch.dead_lettered += len(new)

    def _commit(self, batch: Batch) -> None:
        offsets = batch.offsets.to_commit()
        try:
            results = self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # The data is in InfluxDB; an uncommitted offset only means a re-delivery, which overwrites
            # identical points. Typical cause: the partitions were revoked meanwhile.
            log.warning("commit_failed error=%s offsets=%s", exc.args[0], _fmt(offsets))
            return
        for tp in results or []:
            if tp.error:
                log.warning("commit_failed partition=%s/%d error=%s", tp.topic, tp.partition, tp.error)
            else:
                self.metrics.committed.labels(tp.topic, str(tp.partition)).set(tp.offset)
        log.debug("committed offsets=%s", _fmt(offsets))

    def _attempt(self, step) -> bool:
        """Run a flushing step; on InfluxDB or dead-letter trouble hold what is in flight and back off."""
        try:
            step()
        except (InfluxUnavailableError, DeadLetterError) as exc:
            self.metrics.write_failures.inc()
            retry_after = exc.retry_after if isinstance(exc, InfluxUnavailableError) else None
            delay = backoff(self._held_attempts, retry_after, cap=10.0)
            self._held_attempts += 1
            self._retry_at = time.monotonic() + delay
            if self._held_attempts == 1:
                self.consumer.pause(self.consumer.assignment())
                self.metrics.paused.set(1)
            held = sum(b.transformed.samples_in for b in self.inflight if b.transformed)
            log.warning("flush_failed attempt=%d retry_in=%.1fs samples=%d error=%s", self._held_attempts, delay,
                        held + self.batch.samples, exc)
            return False
        except InfluxAuthError as exc:
            self._fatal = exc
            raise
        if self._held_attempts:
            log.info("flush_recovered attempts=%d", self._held_attempts)
            self._resume()
        return True

    def _held(self) -> bool:
        return self._held_attempts > 0

    def _flush_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.flush()
                return True
            except (InfluxUnavailableError, DeadLetterError) as exc:
                if time.monotonic() >= deadline:
                    log.error("flush_abandoned error=%s samples=%d (not committed: will be re-delivered)",
                              exc, self.batch.samples)
                    return False
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            except HealthpipeError as exc:
                log.error("flush_abandoned error=%s", exc)
                return False

    def _abandon(self, lost: set[tuple[str, int]], reason: str) -> None:
        """Drop the uncommitted batch; rewind the partitions we keep so their messages are read again."""
        first: dict[tuple[str, int], int] = {}
        for batch in (self.batch, *self.inflight):  # in-flight batches hold the older offsets
            for tp in batch.offsets.rewind_points():
                key = (tp.topic, tp.partition)
                first[key] = min(first.get(key, tp.offset), tp.offset)
        rewind = [TopicPartition(t, p, o) for (t, p), o in sorted(first.items()) if (t, p) not in lost]
        messages = len(self.batch.sources) + sum(len(b.sources) for b in self.inflight)
        log.warning("batch_abandoned reason=%s messages=%d rewind=%s", reason, messages, _fmt(rewind))
        # An abandoned write may still finish on the writer thread: harmless, only completion commits.
        self.batch, self.inflight = Batch(), deque()
        for tp in rewind:
            try:
                self.consumer.seek(tp)
            except KafkaException as exc:
                log.error("rewind_failed partition=%s/%d error=%s", tp.topic, tp.partition, exc)
        self._resume()

    def _resume(self) -> None:
        """Leave the held state: resume every partition we own."""
        if self._held_attempts:
            self._held_attempts = 0
            self.consumer.resume(self.consumer.assignment())
            self.metrics.paused.set(0)

    # --- rebalance callbacks -----------------------------------------------------------------------------

    def _on_assign(self, consumer, partitions: list[TopicPartition]) -> None:
        """New partitions: nothing to do but note them; a held batch pauses them on the next cycle."""
        self.metrics.rebalances.labels("assign").inc()
        self.assigned = self.assigned | {(tp.topic, tp.partition) for tp in partitions}
        log.info("partitions_assigned partitions=%s", _fmt(partitions))

    def _on_revoke(self, consumer, partitions: list[TopicPartition]) -> None:
        """Partitions are leaving cleanly: flush and commit within the deadline, else abandon the batch.

        After this returns another member may read these partitions from our last commit, so anything
        not committed here will be re-delivered there (and overwrite identical points)."""
        self.metrics.rebalances.labels("revoke").inc()
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self.assigned = self.assigned - revoked
        log.info("partitions_revoked partitions=%s", _fmt(partitions))
        if not self.batch and not self.inflight:
            return
        if self._fatal is None and self._flush_within(self.cfg.consumer.revoke_deadline_seconds):
            self._resume()
            return
        self._abandon(revoked, "revoke_deadline")

    def _on_lost(self, consumer, partitions: list[TopicPartition]) -> None:
        """Partitions were taken from us (session timeout): someone else may own them, so never commit."""
        self.metrics.rebalances.labels("lost").inc()
        self.assigned = self.assigned - {(tp.topic, tp.partition) for tp in partitions}
        log.warning("partitions_lost partitions=%s", _fmt(partitions))
        if self.batch or self.inflight:
            self._abandon({(tp.topic, tp.partition) for tp in partitions}, "partitions_lost")

    # --- librdkafka callbacks ------------------------------------------------------------------------------

    def _on_stats(self, stats_json: str) -> None:
        stats = orjson.loads(stats_json)
        for topic, t in stats.get("topics", {}).items():
            for pid, p in t.get("partitions", {}).items():
                if pid != "-1" and p.get("consumer_lag", -1) >= 0:
                    self.metrics.lag.labels(topic, pid).set(p["consumer_lag"])

    def _on_kafka_error(self, err: KafkaError) -> None:
        log.warning("kafka_error error=%s", err)


def _fmt(tps: list[TopicPartition]) -> str:
    return ",".join(f"{tp.partition}@{tp.offset}" for tp in tps) or "-"


def main(config_path: str | None = None, until_idle: float | None = None) -> int:
    cfg = load_config(config_path)
    logs.configure(cfg.pipeline.log_level, cfg.secrets())
    service = ConsumerService(cfg)
    return run_service("consumer", service, cfg.consumer.metrics_port, lambda: service.run_continuous(until_idle))


