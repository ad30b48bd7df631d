"""The one feature function: what online serving (`healthpipe features serve`, `latest_window`) and the training
export (`healthpipe export --features`) both compute, so a model sees at serving time exactly what it saw in
training.

For a series and an instant `at`, over the window (at - window, at] (samples with timestamp ≤ at only):

    last         the newest value
    mean         arithmetic mean
    min, max
    stddev       population standard deviation (ddof 0)
    slope        least-squares slope of value against time, per second (NaN below 2 samples)
    count        samples in the window
    staleness_s  at - the newest sample's timestamp, in seconds

`compute_windows` computes many windows in one pass of numpy (a request for 1,000 series is one call, not
1,000: ~50 µs a window one by one). Each window's features depend on its own samples only, in the same order of
operations whichever windows share the call, so the same samples always give bit-identical floats
(tests/unit/test_features_fn.py checks a window alone against the same window among others).
"""

from __future__ import annotations

import math

import numpy as np

NAMES = ("last", "mean", "min", "max", "stddev", "slope", "count", "staleness_s")
EMPTY = {n: (0 if n == "count" else math.nan) for n in NAMES}


def compute_windows(ts_ms: np.ndarray, values: np.ndarray, lengths: np.ndarray,
                    at_ms: np.ndarray) -> dict[str, np.ndarray]:
    """Features of consecutive windows: window i is the next lengths[i] samples of (ts_ms, values), sorted by
    time, all ≤ at_ms[i]. One array per feature name, one entry per window (NaN, and count 0, when empty)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    k = len(lengths)
    out = {n: np.full(k, np.nan) for n in NAMES}
    out["count"] = lengths.copy()
    full = lengths > 0
    if not full.any():
        return out
    ends = np.cumsum(lengths)
    starts = (ends - lengths)[full]  # reduceat needs non-empty runs: an empty window has no samples to skip
    n = lengths[full]
    last = ends[full] - 1
    v = np.asarray(values, dtype=np.float64)
    ts = np.asarray(ts_ms, dtype=np.int64)
    nf = n.astype(np.float64)
    mean = np.add.reduceat(v, starts) / nf
    deviation = v - np.repeat(mean, n)
    t = (ts - np.repeat(ts[starts], n)).astype(np.float64) / 1000.0
    dt = t - np.repeat(np.add.reduceat(t, starts) / nf, n)
    spread = np.add.reduceat(dt * dt, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where((n >= 2) & (spread > 0), np.add.reduceat(dt * deviation, starts) / spread, np.nan)
    out["last"][full] = v[last]
    out["mean"][full] = mean
    out["min"][full] = np.minimum.reduceat(v, starts)
    out["max"][full] = np.maximum.reduceat(v, starts)
    out["stddev"][full] = np.sqrt(np.add.reduceat(deviation * deviation, starts) / nf)
    out["slope"][full] = slope
    out["staleness_s"][full] = (np.asarray(at_ms, dtype=np.int64)[full] - ts[last]) / 1000.0
    return out


def compute(ts_ms: np.ndarray, values: np.ndarray, at_ms: int) -> dict[str, float]:
    """Features of one series' samples in one window (ts_ms sorted ascending, all ≤ at_ms)."""
    batch = compute_windows(ts_ms, values, np.array([len(values)]), np.array([at_ms]))
    return {n: (int(batch[n][0]) if n == "count" else float(batch[n][0])) for n in NAMES}


def window_slice(ts_ms: np.ndarray, at_ms: int, window_ms: int) -> slice:
    """The samples of (at - window, at] in a sorted timestamp array."""
    lo = int(np.searchsorted(ts_ms, at_ms - window_ms, side="right"))
    hi = int(np.searchsorted(ts_ms, at_ms, side="right"))
    return slice(lo, hi)
