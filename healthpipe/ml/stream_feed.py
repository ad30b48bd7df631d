"""Feeding the feature server's window store (stream_store.py) from InfluxDB and the topic, with no gap and no
second copy of a sample.

A sync, on start and after a break in the stream:
1. read the consumer group's committed offsets C (per partition): the consumer commits only after InfluxDB has
   a message's points, so every message before C is in InfluxDB;
2. fill the store with InfluxDB's samples of the last `features.stream_span`, every configured query (read
   after step 1, so it holds at least everything before C);
3. follow the topic from C, `read_committed`, by assignment on a throw-away group that never commits (every
   replica of the server reads every partition; the reader role's grants cover it, common/principals.py).
   A message both in the fill and after C lands twice on the same timestamp: the store overwrites, as InfluxDB
   does.
Each message goes through `decode` and the consumer's own transform (`DataTransformer.points`): a dead letter
is skipped here as there, a sample the consumer drops is dropped here.

Freshness: `caught_up_at` is when the store last held everything the topic had (the newest offset readable,
asked of the broker once a second): `staleness_s` = now - that. Kafka down: the question fails, staleness grows,
the answers stay those of the samples held (never a guess), and /readyz fails past features.max_staleness_seconds.
A partition reset by librdkafka (records gone to retention while the server was behind) breaks the stream: the
store is filled again.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time

import requests
from confluent_kafka import IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from healthpipe.common import allocator, kafka
from healthpipe.common.bounded import BoundedCache
from healthpipe.common.config import HealthpipeConfig
from healthpipe.common.errors import HealthpipeError, Malformed
from healthpipe.common.flux import query_predicate, read_series
from healthpipe.common.messages import SeriesWindow, decode
from healthpipe.common.retry import backoff
from healthpipe.ml.stream_store import StreamStore
from healthpipe.schema import series_id, stored_tags
from healthpipe.sinks.influx.transformer import DataTransformer, series_key

log = logging.getLogger(__name__)

FILL_SLICE_MS = 60_000


class StreamBroken(HealthpipeError):
    """The topic no longer continues what the store holds (records lost to retention): fill again."""


class StreamFeed:
    def __init__(self, cfg: HealthpipeConfig, store: StreamStore, clock=time.time):
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.transformer = DataTransformer(cfg.transform)
        self.identities: BoundedCache[tuple, tuple[str, dict[str, str]]] = BoundedCache(
            "feature_stream_identities", cfg.transform.series_cache_size)
        self.offsets: dict[int, int] = {}  # per partition, the next offset to apply: every one before is held
        self.caught_up_at: float | None = None  # wall time the store last held everything the topic had
        self.fills = 0
        self.last_fill_seconds = 0.0
        self.skipped = 0  # messages the consumer dead-letters (undecodable)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> StreamFeed:
        self._thread = threading.Thread(target=self.run, name="features-stream", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def staleness_s(self) -> float | None:
        return None if self.caught_up_at is None else max(0.0, self.clock() - self.caught_up_at)

    def run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                self._sync_and_follow()
                attempt = 0
            except (KafkaException, HealthpipeError, requests.RequestException) as exc:
                delay = backoff(attempt, cap=10.0)
                attempt += 1
                log.warning("features_stream_interrupted error=%r retry_in=%.1fs", str(exc)[:300], delay)
                self._stop.wait(delay)
            except Exception:  # a bug: the server keeps answering from InfluxDB, the log has the trace
                log.exception("features_stream_failed")
                self._stop.wait(10)

    # --- one sync ---------------------------------------------------------------------------------------------

    def _sync_and_follow(self) -> None:
        topic = self.cfg.kafka.topic
        # a throw-away group (healthpipe-reader-*: the reader role's ACL); librdkafka's default prefetch (64 MB)
        # would be a good part of the server's memory
        consumer = kafka.reader(self.cfg, extra={"queued.max.messages.kbytes": 4096})
        try:
            partitions = kafka.partitions_of(consumer, topic)
            start = self._committed(partitions)
            self._fill()
            self.offsets = dict(start)
            consumer.assign([TopicPartition(topic, p, o) for p, o in start.items()])
            self._follow(consumer, topic, partitions)
        finally:
            consumer.close()

    def _committed(self, partitions: list[int]) -> dict[int, int]:
        """The consumer group's committed offsets; a partition it never committed: its first readable offset."""
        group = kafka.reader(self.cfg, group_id=self.cfg.kafka.group_id)  # asks only: never joins, never commits
        try:
            topic = self.cfg.kafka.topic
            committed = group.committed([TopicPartition(topic, p) for p in partitions], timeout=30)
            return {tp.partition: tp.offset if tp.offset >= 0 else
                    group.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=30)[0]
                    for tp in committed}
        finally:
            group.close()

    def _fill(self) -> None:
        """The store := InfluxDB's samples of the span, for every configured query, read a minute at a time (one
        read of the whole span held ~20× the store's own memory at 10,000 series, and kept it)."""
        t0 = time.monotonic()
        now_ms = int(self.clock() * 1000)
        low_ms = now_ms - self.store.span_ms
        until_ms = now_ms + int(self.cfg.transform.max_future_skew_seconds * 1000)  # what the consumer accepts
        self.store.reset(low_ms)
        held = 0
        for query in self.cfg.extract.queries:
            for start in range(low_ms, until_ms, FILL_SLICE_MS):
                read = read_series(self.cfg.load.influxdb, query_predicate(query), start,
                                   min(start + FILL_SLICE_MS, until_ms))
                self.store.add_many((series_id(tags), tags, ts, values) for tags, ts, values in read)
                held += sum(len(ts) for _, ts, _ in read)
        self.store.filled()
        _give_back_memory()
        # What exists now (modules, config, the filled store) lives as long as the process: freezing it keeps it
        # out of the cyclic collector's full passes, which walked all of it (~50 ms at 1,000 series) every few
        # dozen requests and made B8's p99. Reference counting still frees what the store lets go.
        gc.collect()
        gc.freeze()
        self.fills += 1
        self.last_fill_seconds = time.monotonic() - t0
        log.info("features_stream_filled samples=%d series=%d seconds=%.2f", held, len(self.store),
                 self.last_fill_seconds)

    def _follow(self, consumer, topic: str, partitions: list[int]) -> None:  # noqa: ANN001 (a confluent Consumer)
        admin = kafka.admin_client(self.cfg.kafka)
        at_end: dict[int, int] = {}  # partition → the end offset its last EOF reported
        next_check = 0.0
        while not self._stop.is_set():
            windows: list[SeriesWindow] = []
            offsets = dict(self.offsets)
            # the first message as soon as it comes, then what else is there without waiting: consume(500, 0.1)
            # waited out its 0.1 s unless 500 had arrived (half the store's freshness at 100 messages a second)
            first = consumer.poll(0.1)
            for msg in ([first, *consumer.consume(499, 0)] if first is not None else []):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end[msg.partition() or 0] = msg.offset() or 0
                    elif err.code() == KafkaError._AUTO_OFFSET_RESET:
                        raise StreamBroken(f"{topic}: {err.str()}")
                    elif err.fatal():
                        raise KafkaException(err)
                    continue
                p, offset = msg.partition() or 0, msg.offset() or 0
                offsets[p] = offset + 1
                try:
                    windows.append(decode(msg.value(), msg.headers(), self.cfg.consumer.max_message_bytes))
                except Malformed:
                    self.skipped += 1
            if windows:
                self.apply(windows)
            self.offsets = offsets  # published after the store has their samples (answers read it first)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + 1.0
                self._check_caught_up(admin, topic, partitions, at_end)
                self.store.trim()

    def apply(self, windows: list[SeriesWindow]) -> None:
        """The windows' samples, as the consumer writes them, into the store."""
        batch = []
        for i, ts, values in self.transformer.points(windows):
            w = windows[i]
            key = series_key(w)
            identity = self.identities.get(key)
            if identity is None:
                tags = stored_tags(self.transformer.tags(w))
                identity = self.identities.put(key, (series_id(tags), tags))
            batch.append((identity[0], identity[1], ts, values))
        self.store.add_many(batch)

    def _check_caught_up(self, admin: AdminClient, topic: str, partitions: list[int],
                         at_end: dict[int, int]) -> None:
        asked_at = self.clock()
        # one ListOffsets for every partition, from a client of its own: through the reading consumer each
        # partition's question waited behind its long-polling fetch (~0.3 s each, 1.9 s for 6: never caught up)
        asked = admin.list_offsets({TopicPartition(topic, p): OffsetSpec.latest() for p in partitions},
                                   isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=2)
        try:
            ends = {tp.partition: future.result().offset for tp, future in asked.items()}
        except KafkaException:
            return  # the broker did not answer: not known to be caught up, staleness grows
        # under read_committed a partition's log may end in transaction markers, never returned as messages: its
        # EOF event says where the reader stands
        if all(max(self.offsets.get(p, 0), at_end.get(p, 0)) >= ends[p] for p in partitions):
            self.caught_up_at = asked_at


def _give_back_memory() -> None:
    """Return what a fill's reads freed to the system: glibc's heap keeps it otherwise (measured at 10,000 series
    × 10 min: 402 → 340 MB RSS; the store itself is 65 MB), and so does pyarrow's pool where something in the
    process loaded it (the fill itself no longer does)."""
    if "pyarrow" in sys.modules:
        sys.modules["pyarrow"].default_memory_pool().release_unused()
    allocator.trim()
