"""ParquetSink: the cold tier, a `Sink` behind the consumer's own loop (healthpipe/consumer/service.py).

Per Kafka partition, messages accumulate into an open *range* of offsets. A range is sealed when it holds
`archive.max_file_rows` rows or is `archive.max_file_age_seconds` old (or on revoke/shutdown); sealing writes:

    1. the range's intent, `_ranges/<topic>/<partition>/<first>-<last>.json` (its files and rows);
    2. one Parquet file per hour its samples fall in, each named (topic, partition, first, last), each atomic;

and only then does `durable()` report `last + 1` for the partition, which the checkpoint commits. After a crash
anywhere in 1-2 the group re-reads from its committed offset; `assigned()` finds the intent and the range is
cut again at exactly the same offsets, so the same files get the same names and the same bytes (rows in offset
order, dictionaries in first-seen order): no duplicate row, no partial file, ever. Intents of committed ranges
are deleted after the commit (`committed()`).

A sealed range's files are built by a builder thread while the loop reads on (pyarrow encodes without the GIL);
ranges are still published strictly in order, each only once its files are built.

This module is the bookkeeping: open ranges per partition, sealing, intents, recovery and the offsets that are
durable. What a range's rows and files are is files.py's job.
A sample whose timestamp is not a positive integer cannot be placed in an hour: it is dropped and counted
(`samples_dropped{reason="bad_timestamp"}`), as the consumer does.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import orjson
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as MetricCounter

from healthpipe.common.config import ArchiveSettings
from healthpipe.common.messages import RawSamples, SeriesWindow
from healthpipe.common.records import Source, TopicPartitionKey, earliest
from healthpipe.schema import fastline
from healthpipe.sinks.archive import layout
from healthpipe.sinks.archive.files import OpenRange, Parsed, build_files, timestamps_of, values_of
from healthpipe.sinks.archive.store import Store
from healthpipe.sinks.base import Sink, WriteOutcome

log = logging.getLogger(__name__)
TopicPartitionOffsets = dict[TopicPartitionKey, int]


class ArchiveMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.files = MetricCounter("healthpipe_archive_files_written_total", "Parquet files published",
                                   registry=registry)
        self.rows = MetricCounter("healthpipe_archive_rows_written_total", "Rows in published files", registry=registry)
        self.bytes = MetricCounter("healthpipe_archive_bytes_written_total", "Bytes of published files",
                                   registry=registry)
        self.ranges = MetricCounter("healthpipe_archive_ranges_total", "Offset ranges sealed, by why", ["why"],
                                    registry=registry)


@dataclass
class ArchiveBatch:
    parsed: list[Parsed]
    samples_in: int
    dropped: Counter
    applied: int = 0  # messages appended so far: a retried write continues here


@dataclass
class _Sealed:
    """A range whose files are built and may be (re)written: the same bytes every time."""

    topic: str
    partition: int
    first: int
    last: int
    build: Future[dict[str, bytes]]  # path → Parquet bytes, built by the sink's builder threads
    rows: int
    marker_written: bool = False
    published: set[str] = field(default_factory=set)

    @property
    def files(self) -> dict[str, bytes]:
        return self.build.result()


# One builder: with two, a 2 M-sample backlog took 4.1-4.3 s instead of 4.4 s but peaked at 294 MB instead of
# 250 (bench/archive.py); what counts is that building overlaps the loop's reading
BUILD_THREADS = 1
MAX_BUILDING = 4  # sealed ranges waiting for their files before write() waits too (bounds memory)


class ParquetSink(Sink[ArchiveBatch]):
    name = "archive"
    build_files = staticmethod(build_files)  # a sealed range → {path: Parquet bytes} (the hive layout's)

    def __init__(self, settings: ArchiveSettings, store: Store, registry: CollectorRegistry, clock=time.monotonic):
        self.settings = settings
        self.store = store
        self.batch_size = settings.batch_size
        self.metrics = ArchiveMetrics(registry)
        self.clock = clock
        self._open: dict[TopicPartitionKey, OpenRange] = {}
        self._sealed: list[_Sealed] = []  # sealed, not yet fully written (a retry writes them again)
        self._durable: TopicPartitionOffsets = {}
        self._cuts: dict[TopicPartitionKey, list[tuple[int, int, list[str]]]] = {}  # recovery: ranges to re-cut
        self._intents: dict[TopicPartitionKey, list[tuple[int, int]]] = {}  # written by us, not yet committed
        self._unrecovered: set[TopicPartitionKey] = set()  # assigned, no message read yet
        # Files are built (arrays → Parquet, zstd) off the loop's thread, which reads on meanwhile (pyarrow's
        # encoders run without the GIL)
        self._builder = ThreadPoolExecutor(max_workers=BUILD_THREADS, thread_name_prefix="parquet-build")

    # --- the Sink interface -------------------------------------------------------------------------------

    def check(self) -> None:
        self.store.check()

    def prepare(self, windows: Sequence[SeriesWindow], sources: Sequence[Source]) -> ArchiveBatch:
        parsed: list[Parsed] = []
        dropped: Counter = Counter()
        samples = 0
        for w, src in zip(windows, sources, strict=True):
            samples += len(w.samples)
            metric = w.labels.get("__name__") or w.query
            labels = orjson.dumps(dict(sorted(w.labels.items()))).decode()
            series = (w.key.decode(), w.query, w.metric_type, metric, labels)
            arrays = fastline.sample_arrays(w.samples.text) if isinstance(w.samples, RawSamples) else None
            if arrays is not None:  # the usual text: straight into arrays, no Python object per sample
                parsed.append(Parsed(src, series, np.frombuffer(arrays[0], np.int64),
                                     np.frombuffer(arrays[1], np.float64), None))
                continue
            raw_ts = [s[0] for s in w.samples]
            values, nulls = values_of([s[1] for s in w.samples])
            ts = timestamps_of(raw_ts)
            if ts is None:  # slow path: keep the samples whose timestamp is a positive integer
                keep = np.array([type(t) is int and t > 0 for t in raw_ts], dtype=bool)
                dropped["bad_timestamp"] += int((~keep).sum())
                ts = np.array([t for t, k in zip(raw_ts, keep, strict=True) if k], dtype=np.int64)
                values = values[keep]
                nulls = nulls[keep] if nulls is not None else None
            parsed.append(Parsed(src, series, ts, values, nulls))
        return ArchiveBatch(parsed, samples, dropped)

    def write(self, prepared: ArchiveBatch) -> WriteOutcome:
        # Files built meanwhile are published; the loop reads on while the rest build (durable() says what is in)
        self._publish_sealed(wait=False)
        now = self.clock()
        while prepared.applied < len(prepared.parsed):
            p = prepared.parsed[prepared.applied]
            self._append(p, now)
            prepared.applied += 1
            self._publish_sealed(wait=len(self._sealed) > MAX_BUILDING)
        self._seal_due(now)
        self._publish_sealed(wait=False)
        return WriteOutcome(written=sum(len(p.ts) for p in prepared.parsed))

    def durable(self) -> TopicPartitionOffsets:
        return dict(self._durable)

    def flush(self, partitions: set[TopicPartitionKey] | None = None) -> TopicPartitionOffsets:
        for key in [k for k in self._open if partitions is None or k in partitions]:
            self._seal(key, "flush")
        self._publish_sealed()
        return self.durable()

    def tick(self) -> TopicPartitionOffsets | None:
        """Called by the loop when idle: finish the files being built, seal ranges that reached their age; the
        offsets to commit, if any."""
        due = any(self.clock() - r.started >= self.settings.max_file_age_seconds for r in self._open.values())
        if not due and not self._sealed:
            return None
        self._seal_due(self.clock())
        self._publish_sealed()
        return self.durable()

    def drop(self, partitions: set[TopicPartitionKey]) -> TopicPartitionOffsets:
        firsts: TopicPartitionOffsets = {}
        for key in partitions:
            r = self._open.pop(key, None)
            if r is not None:
                firsts[key] = r.first
            self._durable.pop(key, None)
            self._cuts.pop(key, None)
            self._intents.pop(key, None)
            self._unrecovered.discard(key)
        for s in [s for s in self._sealed if (s.topic, s.partition) in partitions]:
            self._sealed.remove(s)
            earliest(firsts, [((s.topic, s.partition), s.first)])
        return firsts

    def assigned(self, committed: TopicPartitionOffsets) -> None:
        """New partitions: their recovery happens at the first message we get from each (see _recover)."""
        self._unrecovered |= set(committed)

    def _recover(self, key: TopicPartitionKey, first_offset: int) -> None:
        """Intents left by an earlier run, seen from the first offset we read again (= the group's committed
        position): ranges that end before it were committed (their intent is history); a range that starts
        there is cut again at exactly its offsets, giving the same files."""
        self._unrecovered.discard(key)
        pending = []
        for path, _size in self.store.list(layout.markers_dir(*key)):
            span = layout.parse_marker(path.rpartition("/")[2])
            if span is None:
                continue
            first, last = span
            if last < first_offset:
                self.store.delete(path)
            elif first < first_offset:
                # records first..first_offset-1 are gone from Kafka (retention) and this range was never
                # committed: re-reading the rest would duplicate rows of its files, so they are replaced
                files = orjson.loads(self.store.get(path))["files"]
                log.error("archive_range_unrepeatable partition=%s/%d range=%d-%d resume_at=%d: replacing its %d "
                          "files (the records before the resume offset are gone: see offsets_lost)", *key, first,
                          last, first_offset, len(files))
                for f in files:
                    self.store.delete(f)
                self.store.delete(path)
            else:
                pending.append((first, last, orjson.loads(self.store.get(path))["files"]))
        if pending:
            pending.sort()
            self._cuts[key] = pending
            log.info("archive_recovery partition=%s/%d ranges=%s", *key, ",".join(f"{a}-{b}" for a, b, _ in pending))

    def committed(self, offsets: TopicPartitionOffsets) -> None:
        """After a commit: intents of ranges now committed are deleted (best effort: assigned() cleans up what a
        crash leaves)."""
        for key, offset in offsets.items():
            intents = self._intents.get(key, [])
            for first, last in [i for i in intents if i[1] < offset]:
                try:
                    self.store.delete(layout.marker_path(*key, first, last))
                except Exception as exc:  # noqa: BLE001 (cleanup only: never fail a commit for it)
                    log.warning("archive_intent_cleanup_failed partition=%s/%d error=%s", *key, exc)
                    return
                intents.remove((first, last))

    def close(self) -> None:
        self._builder.shutdown(wait=False, cancel_futures=True)

    # --- ranges -------------------------------------------------------------------------------------------

    def _append(self, p: Parsed, now: float) -> None:
        key = (p.source.topic, p.source.partition)
        if key in self._unrecovered:
            self._recover(key, p.source.offset)
        cuts = self._cuts.get(key)
        if cuts and p.source.offset > cuts[0][1]:  # cannot happen with read_committed re-reads; never duplicate
            first, last, files = cuts.pop(0)
            log.error("archive_recut_mismatch partition=%s/%d range=%d-%d offset=%d: replacing its files", *key,
                      first, last, p.source.offset)
            for f in files:
                self.store.delete(f)
            self.store.delete(layout.marker_path(*key, first, last))
            if key in self._open:
                self._seal(key, "recovery")
        r = self._open.get(key)
        if r is None:
            r = self._open[key] = OpenRange(key[0], key[1], p.source.offset, now)
        r.append(p)
        if cuts:
            if r.last == cuts[0][1]:
                cuts.pop(0)
                self._seal(key, "recovery")
        elif r.rows >= self.settings.max_file_rows:
            self._seal(key, "rows")

    def _seal_due(self, now: float) -> None:
        for key, r in list(self._open.items()):
            if not self._cuts.get(key) and now - r.started >= self.settings.max_file_age_seconds:
                self._seal(key, "age")

    def _seal(self, key: TopicPartitionKey, why: str) -> None:
        r = self._open.pop(key)
        build = self._builder.submit(self.build_files, r)
        self._sealed.append(_Sealed(r.topic, r.partition, r.first, r.last, build, r.rows))
        self.metrics.ranges.labels(why).inc()

    def _put_files(self, s: _Sealed) -> None:
        """Write a sealed range's files not yet written (a retry resumes after the last one that went in)."""
        for path, data in sorted(s.files.items()):
            if path not in s.published:
                self.store.put(path, data)
                s.published.add(path)
                self.metrics.files.inc()
                self.metrics.bytes.inc(len(data))

    def _publish_sealed(self, wait: bool = True) -> None:
        """Write sealed ranges in order: intent, then files; a failure raises and the next call resumes.
        wait=False: stop at the first range whose files are still being built."""
        while self._sealed:
            s = self._sealed[0]
            if not wait and not s.build.done():
                return
            if not s.marker_written:
                intent = {"topic": s.topic, "partition": s.partition, "first": s.first, "last": s.last,
                          "rows": s.rows, "files": sorted(s.files)}
                self.store.put(layout.marker_path(s.topic, s.partition, s.first, s.last), orjson.dumps(intent))
                s.marker_written = True
                self._intents.setdefault((s.topic, s.partition), []).append((s.first, s.last))
            self._put_files(s)
            self.metrics.rows.inc(s.rows)
            self._sealed.pop(0)
            self._durable[(s.topic, s.partition)] = s.last + 1
            log.info("archive_range_written partition=%s/%d offsets=%d-%d rows=%d files=%d", s.topic, s.partition,
                     s.first, s.last, s.rows, len(s.files))

    # --- Parquet ------------------------------------------------------------------------------------------
