"""Shaping samples for training: long frames, the regular grid, counter rates, the wide pivot.

- long: `series_id`, `ts` (timestamp[ms, UTC]), `value`, `metric`, `query`, `metric_type`, then one column per
  label (the series' stored tags other than metric and metric_type; empty where a series lacks it);
- grid (`step`): every series on multiples of the step since the epoch. Each step window (g - step, g] is reduced
  to its last sample, observed at g (InfluxDB does this reduction for the hot and warm tiers; `reduce_to_step`
  does it for raw samples, so every tier gives the same grid); the value at grid point g is that of the newest
  non-empty window ending at g' ≤ g with g - g' < 5 min (Prometheus' lookback), else null: gaps stay gaps;
- rates (`rate_counters`): a counter's value becomes the per-second increase since the previous observation,
  a decrease counting as a reset (the new value in full); on the grid, between consecutive grid observations;
- wide: one row per grid timestamp, one column per series_id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from healthpipe.common.config import QuerySettings, TiersSettings
from healthpipe.schema import series_id

STALENESS_MS = 300_000
FIRST = ["series_id", "ts", "value", "metric", "query", "metric_type"]


def identify(frame: pd.DataFrame, query: QuerySettings) -> pd.DataFrame:
    """Add series_id and query to a tier reader's frame (tag columns, ts, value)."""
    tags = [c for c in frame.columns if c not in ("ts", "value")]
    out = frame.copy()
    if len(frame) and tags:
        # one fingerprint per distinct tag set, not per row (a window of 100 series is 30,000 rows)
        codes = frame.groupby(tags, sort=False, dropna=False).ngroup().to_numpy()
        firsts = frame[tags].drop_duplicates()
        ids = np.array([series_id(dict(zip(tags, row, strict=True))) for row in firsts.itertuples(index=False)])
        out["series_id"] = ids[codes]
    else:
        out["series_id"] = series_id({}) if len(frame) else pd.Series(dtype=str)
    out["query"] = query.name
    for c in ("metric", "metric_type"):
        if c not in out:
            out[c] = ""
    return out


@dataclass(frozen=True)
class SeriesRuns:
    """A frame's samples sorted by (series_id, ts): series i is ts[starts[i]:ends[i]], its first row in the frame
    is firsts[i] (its other columns are the same on every row)."""

    ts: np.ndarray
    values: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    firsts: np.ndarray


def series_runs(frame: pd.DataFrame) -> SeriesRuns:
    """The identified samples of `frame` (non-empty) as one run per series, in series_id order."""
    codes, _ = pd.factorize(frame["series_id"], sort=True)  # integer codes sort faster than the ids' strings
    ts = frame["ts"].to_numpy(np.int64)
    order = np.lexsort((ts, codes))
    codes = codes[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    return SeriesRuns(ts[order], frame["value"].to_numpy(np.float64)[order], starts, np.r_[starts[1:], len(codes)],
                      order[starts])


def is_counter(frame: pd.DataFrame, tiers: TiersSettings) -> pd.Series:
    return frame["metric_type"].isin(tiers.counter_metric_types) | frame["metric"].str.endswith("_total")


def rates(frame: pd.DataFrame, tiers: TiersSettings) -> pd.DataFrame:
    """Counters to per-second rates (reset rule), per series in time order; other series unchanged."""
    if frame.empty:
        return frame
    frame = frame.sort_values(["series_id", "ts"], kind="stable").reset_index(drop=True)
    counter = is_counter(frame, tiers)
    prev_v = frame.groupby("series_id")["value"].shift()
    prev_t = frame.groupby("series_id")["ts"].shift()
    delta = frame["value"] - prev_v
    delta = delta.where(delta >= 0, frame["value"])  # a decrease is a reset: count the new value in full
    rate = delta / ((frame["ts"] - prev_t) / 1000.0)
    frame.loc[counter, "value"] = rate[counter]
    return frame[~(counter & prev_v.isna())].reset_index(drop=True)  # a counter's first observation has no rate


def reduce_to_step(frame: pd.DataFrame, step_ms: int) -> pd.DataFrame:
    """Raw samples to the last sample of each step window (g - step, g], observed at g: what InfluxDB's
    aggregateWindow(fn: last) gives for the hot tier."""
    if frame.empty:
        return frame
    frame = frame.assign(ts=-(-frame["ts"] // step_ms) * step_ms)
    return frame.drop_duplicates(["series_id", "ts"], keep="last").reset_index(drop=True) \
        if "series_id" in frame else frame


def to_grid(frame: pd.DataFrame, start_ms: int, end_ms: int, step_ms: int) -> pd.DataFrame:
    """Every series of `frame` on the grid points in (start, end]: last observation within the lookback."""
    first = -(-(start_ms + 1) // step_ms) * step_ms
    grid = np.arange(first, end_ms + 1, step_ms, dtype=np.int64)
    if frame.empty or len(grid) == 0:
        return frame.iloc[0:0]
    # one sorted key per observation and per grid point, (series code, time): a binary search finds each grid
    # point's last observation at or before it (a merge_asof on the ids' strings held 3x the chunk in memory)
    codes, ids = pd.factorize(frame["series_id"], sort=True)
    ts = frame["ts"].to_numpy(np.int64)
    order = np.lexsort((ts, codes))
    codes, ts = codes[order].astype(np.int64), ts[order]
    base = min(int(ts.min()), int(grid[0]))
    observed = (codes << 40) | (ts - base)  # 2^40 ms is 34 years: room for any chunk
    series = np.repeat(np.arange(len(ids), dtype=np.int64), len(grid))
    at = np.tile(grid, len(ids))
    idx = np.searchsorted(observed, (series << 40) | (at - base), side="right") - 1
    hit = np.maximum(idx, 0)
    found = (idx >= 0) & (codes[hit] == series) & (at - ts[hit] < STALENESS_MS)
    values = frame["value"].to_numpy(np.float64)[order]
    firsts = order[np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])]
    meta = frame.drop(columns=["ts", "value"]).iloc[firsts]
    out = meta.iloc[series].reset_index(drop=True)
    out["ts"] = at
    out["value"] = np.where(found, values[hit], np.nan)
    return out


def finish(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns in the documented order, ts as timestamp[ms, UTC], labels as strings."""
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype="float64" if c == "value" else "object") for c in FIRST})
    labels = sorted(c for c in frame.columns if c not in FIRST)
    out = frame[FIRST + labels].copy()
    for c in labels:  # categoricals from the reader: plain strings in the output (a file per day has few series)
        out[c] = out[c].astype(str)
    out["ts"] = pd.to_datetime(out["ts"], unit="ms", utc=True).dt.as_unit("ms")
    return out.reset_index(drop=True)


def wide(frame: pd.DataFrame) -> pd.DataFrame:
    """One column per series_id on the timestamps, values as they are (nulls kept)."""
    if frame.empty:
        return pd.DataFrame(index=pd.DatetimeIndex([], name="ts", tz="UTC"))
    return frame.pivot(index="ts", columns="series_id", values="value").sort_index()
