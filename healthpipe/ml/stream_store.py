"""The feature server's window store: the newest samples of every series, in memory, as InfluxDB will hold them.

What it holds: for each series (its stored tag set, `series_id` as every tier computes it), the samples with a
timestamp after `low_ms`, in two compact arrays (int64 timestamps, float64 values: 16 bytes a sample, no Python
object per sample), sorted by time. A sample at a timestamp the series already has replaces it, as a write to
InfluxDB does. Where the samples come from (healthpipe/ml/stream_feed.py): a fill from InfluxDB, then the topic's
messages through the consumer's own transform (`DataTransformer.points`), so the store keeps exactly the samples
the consumer writes and drops what it drops.

What it answers: a selector (a query and tag values) at an instant `at` over a window, when the store holds all
of (at - window, at], i.e. at - window ≥ low_ms; otherwise the caller reads InfluxDB (`covers`). Selection goes
through an index from each (metric type, metric) and each (tag, value) to its series: a selector of one instance
among 100,000 series touches that instance's series only.

Memory: `low_ms` follows the newest timestamp seen minus the span, and series with nothing left are removed (churn
leaves nothing behind); at most `max_series` series, past which the series that went quiet longest are pushed
out and `low_ms` moves past their newest sample (a window that would have needed them is then not covered).
"""

from __future__ import annotations

import threading
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import msgspec
import numpy as np

from healthpipe.common.config import QuerySettings
from healthpipe.common.flux import metric_names

Timestamps = Sequence[int] | np.ndarray  # a message's samples come as lists, a fill's as arrays
Values = Sequence[float] | np.ndarray
TRIM_PER_LOCK = 1000  # series a trim looks at per hold of the store's lock (~1.5 ms)
TRIM_SLACK_MS = 10_000  # how far behind the span a series' oldest sample may be before it is cut


@dataclass
class SeriesSamples:
    series_id: str
    tags: dict[str, str]  # as InfluxDB stores them (metric, metric_type, service, instance, labels...)
    ts: array = field(default_factory=lambda: array("q"))
    values: array = field(default_factory=lambda: array("d"))
    # bumped by every change other than an append after the newest sample (an insert, an overwrite): a window's
    # (first ts, last ts, count, version) then names exactly one set of samples
    version: int = 0
    memo: tuple | None = None  # (that key, the features computed for it but staleness_s)
    # (query, key, the series' answer encoded up to its staleness_s): an unchanged window costs one comparison
    fragment: tuple[str, tuple, bytes] | None = None

    def put(self, ts: Timestamps, values: Values) -> None:
        """Add samples (each series' new samples usually come after its newest: appended); a timestamp already
        held is overwritten. Numpy arrays (a fill) are appended as bytes."""
        if len(ts) == 0:
            return
        if isinstance(ts, np.ndarray):
            if (not self.ts or ts[0] > self.ts[-1]) and bool(np.all(ts[1:] > ts[:-1])):
                self.ts.frombytes(ts.astype(np.int64, copy=False).tobytes())
                self.values.frombytes(np.asarray(values, dtype=np.float64).tobytes())
                return
            ts, values = ts.tolist(), np.asarray(values).tolist()
        if (not self.ts or ts[0] > self.ts[-1]) and all(a < b for a, b in zip(ts, ts[1:], strict=False)):
            self.ts.extend(ts)
            self.values.extend(values)
            return
        self.version += 1
        for t, v in zip(ts, values, strict=True):
            i = bisect_left(self.ts, t)
            if i < len(self.ts) and self.ts[i] == t:
                self.values[i] = v
            else:
                self.ts.insert(i, t)
                self.values.insert(i, v)

    def trim(self, low_ms: int) -> None:
        """Forget the samples at or before low_ms."""
        k = bisect_right(self.ts, low_ms)
        if k:
            del self.ts[:k]
            del self.values[:k]

    def window(self, start_ms: int, end_ms: int) -> Window | None:
        """The samples in (start_ms, end_ms] (None: none): their features from the memo when it holds them, else
        copies of them (copies: the arrays may grow while the caller computes)."""
        ts = self.ts
        lo = bisect_right(ts, start_ms)
        hi = len(ts) if ts and end_ms >= ts[-1] else bisect_right(ts, end_ms)  # usually `at` is now: all of it
        if lo == hi:
            return None
        key = (self.ts[lo], self.ts[hi - 1], hi - lo, self.version)
        memo = self.memo
        if memo is not None and memo[0] == key:
            return Window(self, key, memo[1], None, None)
        return Window(self, key, None, self.ts[lo:hi], self.values[lo:hi])

    def head(self, query: str) -> dict:
        """The series' part of an answer for `query`, without its features (built once: the labels are the tags
        but metric and metric_type)."""
        heads = self.__dict__.setdefault("_heads", {})
        head = heads.get(query)
        if head is None:
            labels = {k: v for k, v in self.tags.items() if k not in ("metric", "metric_type")}
            head = heads[query] = {"series_id": self.series_id, "query": query, "metric": self.tags.get("metric", ""),
                                   "metric_type": self.tags.get("metric_type", ""), "labels": labels}
        return head

    def encoded(self, query: str, key: tuple, names: Sequence[str], features: Sequence[float]) -> bytes:
        """The series' entry in an answer as JSON, cut before its staleness_s (the one feature that moves with
        `at`): `{..., "features": {..., "staleness_s":`. Kept while the window's key stays the same."""
        kept = self.fragment
        if kept is not None and kept[0] == query and kept[1] == key:
            return kept[2]
        whole = msgspec.json.encode({**self.head(query), "features": {**dict(zip(names, features, strict=True)),
                                                                         "staleness_s": 0}})
        assert whole.endswith(b',"staleness_s":0}}'), whole[-40:]
        cut = whole[: -len(b"0}}")]
        self.fragment = (query, key, cut)
        return cut

    @property
    def newest(self) -> int:
        return self.ts[-1] if self.ts else -1


class Window(NamedTuple):
    """One series' part of a request: its features known from an earlier request (`known`, all but staleness_s),
    or its samples to compute them from. (A named tuple: a request for 1,000 series makes 1,000 of these.)"""

    series: SeriesSamples
    key: tuple[int, int, int, int]  # first ts, last ts, count, the series' version
    known: tuple | None
    ts: array | None
    values: array | None

    def remember(self, features: tuple) -> None:
        """Keep the features computed from this window's samples (but staleness_s) for the next request."""
        self.series.memo = (self.key, features)


class StreamStore:
    """Thread-safe: the feed writes, request threads read, under one lock (a request holds it for its copies)."""

    name = "feature_stream_series"  # for CacheCollector: size, limit and evictions as healthpipe_cache_* metrics

    def __init__(self, span_ms: int, max_series: int):
        self.span_ms = span_ms
        self.limit = max_series
        self.evictions = 0
        self.lock = threading.Lock()
        self.low_ms: int | None = None  # None: not filled yet, nothing is covered
        self._pending_low: int | None = None  # the low_ms of the fill under way
        self.newest_ms = 0  # the newest sample timestamp seen in any series
        self._series: dict[str, SeriesSamples] = {}
        self._by_metric: dict[tuple[str, str], set[str]] = {}  # (metric_type, metric) → series ids
        self._by_tag: dict[tuple[str, str], set[str]] = {}  # (tag, value) → series ids

    def __len__(self) -> int:
        return len(self._series)

    # --- writing (the feed) -----------------------------------------------------------------------------------

    def reset(self, low_ms: int) -> None:
        """Forget everything; the store will hold every sample after low_ms once filled (begin a fill)."""
        with self.lock:
            self._series.clear()
            self._by_metric.clear()
            self._by_tag.clear()
            self.low_ms, self.newest_ms = None, low_ms
            self._pending_low = low_ms

    def filled(self) -> None:
        """The fill since `reset` is complete: windows after its low_ms are covered from now on."""
        with self.lock:
            assert self._pending_low is not None, "filled() after reset()"
            self.low_ms = max(self._pending_low, self.low_ms if self.low_ms is not None else self._pending_low)

    def add(self, series_id: str, tags: dict[str, str], ts: Timestamps, values: Values) -> None:
        with self.lock:
            self._add(series_id, tags, ts, values)

    def add_many(self, batch: Iterable[tuple[str, dict[str, str], Timestamps, Values]]) -> None:
        with self.lock:
            for series_id, tags, ts, values in batch:
                self._add(series_id, tags, ts, values)

    def _add(self, series_id: str, tags: dict[str, str], ts: Timestamps, values: Values) -> None:
        floor = self.low_ms if self.low_ms is not None else self._pending_low
        if floor is not None and len(ts) and ts[0] <= floor:  # older than the store keeps (a late backfill)
            keep = [i for i, t in enumerate(ts) if t > floor]
            ts, values = [ts[i] for i in keep], [values[i] for i in keep]
        if not len(ts):
            return
        series = self._series.get(series_id)
        if series is None:
            series = self._series[series_id] = SeriesSamples(series_id, tags)
            self._by_metric.setdefault((tags.get("metric_type", ""), tags.get("metric", "")), set()).add(series_id)
            for pair in tags.items():
                self._by_tag.setdefault(pair, set()).add(series_id)
        series.put(ts, values)
        self.newest_ms = max(self.newest_ms, series.newest)
        if len(self._series) > self.limit:
            self._evict_quietest()

    def trim(self) -> None:
        """Keep the span behind the newest sample; drop series with nothing left (churned away).

        The feed calls this every second. Walking every series under the lock held requests ~15 ms at 10,000
        series (their p99), so the series are looked at TRIM_PER_LOCK at a time, and a series is cut only once its
        oldest sample is TRIM_SLACK_MS behind the span: one cut every few seconds, not one a second. Samples
        older than low_ms are never read (a window starts at or after it), only held a little longer."""
        with self.lock:
            if self.low_ms is None:
                return
            self.low_ms = low = max(self.low_ms, self.newest_ms - self.span_ms)
            ids = list(self._series)
        for first in range(0, len(ids), TRIM_PER_LOCK):
            with self.lock:
                for series_id in ids[first:first + TRIM_PER_LOCK]:
                    series = self._series.get(series_id)
                    if series is None or (series.ts and series.ts[0] > low - TRIM_SLACK_MS):
                        continue
                    series.trim(low)
                    if not series.ts:
                        self._remove(series)

    def _evict_quietest(self) -> None:
        """Past the series limit: push out the 1% of series with the oldest newest sample, and stop covering
        windows they could be in (low_ms moves past their newest sample)."""
        quiet = sorted(self._series.values(), key=lambda s: s.newest)[: max(1, len(self._series) // 100)]
        for series in quiet:
            self._remove(series)
            self.evictions += 1
        edge = quiet[-1].newest
        self._pending_low = max(self._pending_low or edge, edge)
        if self.low_ms is not None:
            self.low_ms = max(self.low_ms, edge)

    def _remove(self, series: SeriesSamples) -> None:
        del self._series[series.series_id]
        key = (series.tags.get("metric_type", ""), series.tags.get("metric", ""))
        for index, k in ((self._by_metric, key), *((self._by_tag, pair) for pair in series.tags.items())):
            members = index.get(k)
            if members is not None:
                members.discard(series.series_id)
                if not members:
                    del index[k]

    # --- reading (requests) -----------------------------------------------------------------------------------

    def covers(self, start_ms: int) -> bool:
        """Whether the store holds every sample of (start_ms, ...]: a window starting there can be answered."""
        low = self.low_ms
        return low is not None and start_ms >= low

    def windows(self, query: QuerySettings, labels: dict[str, str], start_ms: int,
                end_ms: int) -> list[Window] | None:
        """Each matching series with samples in (start_ms, end_ms], in series_id order; None when the store does
        not cover the window. Matching is the Flux predicate's (flux.query_predicate): the query's metric type
        and metric names, and each label equal to its value (a series without the tag does not match)."""
        with self.lock:
            if not self.covers(start_ms):
                return None
            candidates: set[str] = set()
            for name in metric_names(query):
                candidates |= self._by_metric.get((query.metric_type, name), set())
            for pair in labels.items():
                if not candidates:
                    break
                candidates = candidates & self._by_tag.get(pair, set())
            out = []
            for series_id in sorted(candidates):
                window = self._series[series_id].window(start_ms, end_ms)
                if window is not None:
                    out.append(window)
            return out


def as_arrays(windows: list[Window]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The windows' samples one after another, and each window's length: what features.compute_windows takes."""
    if not windows:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64)
    ts = np.frombuffer(b"".join(w.ts.tobytes() for w in windows if w.ts is not None), dtype=np.int64)
    values = np.frombuffer(b"".join(w.values.tobytes() for w in windows if w.values is not None), dtype=np.float64)
    return ts, values, np.array([w.key[2] for w in windows], dtype=np.int64)
