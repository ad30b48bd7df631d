"""The feature server's memory of recent samples, so a /features request reads only what is new.

Reading a window's samples costs InfluxDB ~45 ms for 100 series × 5 minutes (30,000 points as CSV), counting
them ~10 ms: InfluxDB counts inside its storage engine. So for each selector (a query and its tag matches) the
cache keeps the samples it has read, sorted by series and time, and answers a request for (at - window, at] thus:

1. count each series' points in (at - window, at] in InfluxDB;
2. if the cache covers that range and holds exactly those counts, the samples are the cache's;
3. else re-read the newest part, from the oldest of the series' newest samples (a delivery brings each series'
   samples after its newest one; at most `overlap` back) to at, replacing what the cache held there, and
   compare the counts again;
4. if they still differ (a sample older than the overlap arrived: a backfill), read the whole window again.

The features are then computed from exactly the samples InfluxDB holds for the window, the ones the training
export reads, by the one shared feature function: served and exported features stay bit-equal. What the counts
cannot see is a point rewritten in place with a different value at the same timestamp; the pipeline never does
that (a replay writes the same value again), and a read of the whole window every `refresh_seconds` bounds it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar, cast

import pandas as pd
import requests

from healthpipe.common.bounded import BoundedCache
from healthpipe.common.config import HealthpipeConfig, QuerySettings
from healthpipe.common.flux import count_frame, query_predicate, read_frame
from healthpipe.ml import shape
from healthpipe.schema import series_id

T = TypeVar("T")


@dataclass
class _Entry:
    frame: pd.DataFrame  # identified samples (shape.identify), in no particular order
    lo: int  # the cache holds every sample of (lo, hi] as of its reads
    hi: int
    read_whole_at: float  # monotonic time of the last read of a whole window
    lock: threading.Lock = field(default_factory=threading.Lock)


class WindowCache:
    def __init__(self, cfg: HealthpipeConfig, overlap_ms: int = 60_000, refresh_seconds: float = 300,
                 on_read: Callable[[str], None] | None = None, entries: BoundedCache | None = None):
        self.cfg = cfg
        self.overlap_ms = overlap_ms
        self.refresh_seconds = refresh_seconds
        # one entry per selector, each holding at most ~2 windows of its series' samples (compute() trims it)
        self.entries: BoundedCache[tuple, _Entry] = entries if entries is not None else BoundedCache(
            "feature_windows", cfg.features.window_cache_selectors)
        self._lock = threading.Lock()
        self._session = requests.Session()
        self._counting = ThreadPoolExecutor(4, thread_name_prefix="window-count")
        self.reads = {"cached": 0, "newest": 0, "whole": 0}  # how requests were answered (tests, the benchmark)
        self._on_read = on_read or (lambda how: None)

    def compute(self, query: QuerySettings, labels: dict[str, str], start_ms: int, end_ms: int,
                fn: Callable[[pd.DataFrame], T]) -> T:
        """fn(the query's identified samples matching `labels` in (start_ms, end_ms], as InfluxDB holds them now).

        fn runs on the cached samples while InfluxDB counts (its ~10 ms wait and fn's work overlap), and runs
        again only when the counts say the cache was behind."""
        entry = self._entry((query.name, tuple(sorted(labels.items()))), end_ms)
        predicate = query_predicate(query, labels=labels)
        with entry.lock:
            counting = self._counting.submit(count_frame, self.cfg.load.influxdb, predicate, start_ms, end_ms,
                                             self._session)
            covered = entry.lo <= start_ms and time.monotonic() - entry.read_whole_at < self.refresh_seconds
            held = _within(entry.frame, start_ms, end_ms) if covered else None
            guess = fn(held) if held is not None else None
            want = _counted(counting.result())
            if held is not None and _counts(held) == want:
                how, result = "cached", cast(T, guess)  # nothing new (not even in (hi, end_ms]): the same counts
                entry.hi = max(entry.hi, end_ms)
            elif covered and self._catch_up(entry, query, predicate, start_ms, end_ms, want):
                how, result = "newest", fn(_within(entry.frame, start_ms, end_ms))
            else:
                self._read_whole(entry, query, predicate, start_ms, end_ms)
                how, result = "whole", fn(_within(entry.frame, start_ms, end_ms))
            self.reads[how] += 1
            self._on_read(how)
            keep_from = max(entry.lo, end_ms - 2 * (end_ms - start_ms) - self.overlap_ms)
            entry.frame, entry.lo = _within(entry.frame, keep_from, entry.hi), keep_from  # bounded memory
            return result

    def _entry(self, key: tuple, end_ms: int) -> _Entry:
        with self._lock:
            entry = self.entries.get(key)
            if entry is None:
                entry = self.entries.put(key, _Entry(pd.DataFrame(), end_ms, end_ms, float("-inf")))
            return entry

    def _catch_up(self, entry: _Entry, query: QuerySettings, predicate: str, start_ms: int, end_ms: int,
                  want: dict[str, int]) -> bool:
        """Re-read the newest part of the window until the cache holds the counts InfluxDB gave (True), first
        from the oldest of the series' newest samples (a delivery brings each series' samples after its newest
        one: one delivery's worth to read), then from `overlap` before the newest request (samples delivered a
        little late); False when neither is enough (a sample older than that: read the whole window)."""
        newest = int(entry.frame.groupby("series_id", sort=False)["ts"].max().min()) if len(entry.frame) else end_ms
        overlap = min(entry.hi, end_ms) - self.overlap_ms
        for since in sorted({max(entry.lo, min(newest, end_ms)), max(entry.lo, overlap)}, reverse=True):
            if since < end_ms:
                self._replace(entry, query, predicate, since, end_ms)
            have = _counts(_within(entry.frame, start_ms, end_ms))
            if have != want and have.keys() >= want.keys() and all(have[k] >= n for k, n in want.items()):
                # more than counted: points landed between the count and the read; count again
                want = _counted(count_frame(self.cfg.load.influxdb, predicate, start_ms, end_ms, self._session))
            if have == want:
                return True
        return False

    def _replace(self, entry: _Entry, query: QuerySettings, predicate: str, since: int, end_ms: int) -> None:
        """Replace what the cache holds of (since, end_ms] with InfluxDB's points there."""
        fresh = shape.identify(read_frame(self.cfg.load.influxdb, predicate, since, end_ms, session=self._session),
                               query)
        kept = entry.frame[(entry.frame["ts"] <= since) | (entry.frame["ts"] > end_ms)]
        merged = pd.concat([kept, fresh], ignore_index=True) if len(kept) else fresh
        if len(kept) and set(kept.columns) != set(fresh.columns):  # a tag only one read has: empty in the other
            tags = [c for c in merged.columns if c not in ("ts", "value")]
            merged[tags] = merged[tags].astype(object).fillna("")
        entry.frame = merged
        entry.hi = max(entry.hi, end_ms)

    def _read_whole(self, entry: _Entry, query: QuerySettings, predicate: str, start_ms: int, end_ms: int) -> None:
        raw = read_frame(self.cfg.load.influxdb, predicate, start_ms, end_ms, session=self._session)
        entry.frame = shape.identify(raw, query)
        entry.lo, entry.hi, entry.read_whole_at = start_ms, end_ms, time.monotonic()


def _within(frame: pd.DataFrame, start_ms: int, end_ms: int) -> pd.DataFrame:
    if frame.empty:
        return frame
    ts = frame["ts"].to_numpy()
    return frame[(ts > start_ms) & (ts <= end_ms)]


def _counted(counts: pd.DataFrame) -> dict[str, int]:
    """A count frame (one row per series: its tags and `count`) as points per series_id."""
    tags = [c for c in counts.columns if c != "count"]
    return {series_id(dict(zip(tags, row[:-1], strict=True))): int(row[-1])
            for row in counts[[*tags, "count"]].itertuples(index=False, name=None)}


def _counts(frame: pd.DataFrame) -> dict[str, int]:
    """Points per series_id in a frame of samples."""
    if frame.empty:
        return {}
    return {str(k): int(v) for k, v in frame.groupby("series_id", sort=False).size().items()}
