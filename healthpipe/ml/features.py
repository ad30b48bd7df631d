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

Inputs are the samples sorted by timestamp; the same samples always give bit-identical floats.
"""

from __future__ import annotations

import math

import numpy as np

NAMES = ("last", "mean", "min", "max", "stddev", "slope", "count", "staleness_s")
EMPTY = {n: (0 if n == "count" else math.nan) for n in NAMES}


def compute(ts_ms: np.ndarray, values: np.ndarray, at_ms: int) -> dict[str, float]:
    """Features of one series' samples in one window (ts_ms sorted ascending, all ≤ at_ms)."""
    n = len(values)
    if n == 0:
        return dict(EMPTY)
    v = values.astype(np.float64, copy=False)
    t = (ts_ms - ts_ms[0]).astype(np.float64) / 1000.0
    slope = math.nan
    if n >= 2:
        dt = t - t.mean()
        denominator = float(np.dot(dt, dt))
        if denominator > 0:
            slope = float(np.dot(dt, v - v.mean()) / denominator)
    return {"last": float(v[-1]), "mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()),
            "stddev": float(v.std()), "slope": slope, "count": n,
            "staleness_s": (at_ms - int(ts_ms[-1])) / 1000.0}


def window_slice(ts_ms: np.ndarray, at_ms: int, window_ms: int) -> slice:
    """The samples of (at - window, at] in a sorted timestamp array."""
    lo = int(np.searchsorted(ts_ms, at_ms - window_ms, side="right"))
    hi = int(np.searchsorted(ts_ms, at_ms, side="right"))
    return slice(lo, hi)
