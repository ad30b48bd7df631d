"""shape.to_grid against a plain loop: each series at each grid point takes its last observation at or before
the point, if it is less than 5 minutes old (Prometheus' lookback), else null."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from healthpipe.ml import shape

T0 = 1_700_000_000_000


def by_loop(frame: pd.DataFrame, start_ms: int, end_ms: int, step_ms: int) -> dict[tuple[str, int], float]:
    grid = range(-(-(start_ms + 1) // step_ms) * step_ms, end_ms + 1, step_ms)
    out = {}
    for sid, rows in frame.groupby("series_id"):
        obs = sorted(zip(rows["ts"], rows["value"], strict=True))
        for g in grid:
            before = [v for t, v in obs if t <= g and g - t < shape.STALENESS_MS]
            out[(sid, g)] = before[-1] if before else math.nan
    return out


@settings(max_examples=150, deadline=None)
@given(series=st.lists(st.lists(st.integers(0, 3_000_000), max_size=30, unique=True), min_size=1, max_size=6),
       start=st.integers(-400_000, 1_000_000), length=st.integers(1, 2_500_000),
       step=st.sampled_from([1000, 15_000, 60_000]), seed=st.integers(0, 2**16))
def test_to_grid_takes_the_last_observation_within_the_lookback(series, start, length, step, seed):
    rng = np.random.default_rng(seed)
    rows = [{"series_id": f"id{s}", "instance": f"node-{s}", "query": "q", "metric": "m", "metric_type": "gauge",
             "ts": T0 + t, "value": float(rng.normal())} for s, times in enumerate(series) for t in times]
    frame = pd.DataFrame(rows, columns=["series_id", "instance", "query", "metric", "metric_type", "ts", "value"])
    frame = frame.sample(frac=1, random_state=seed).reset_index(drop=True)  # the reader's order is not time order
    start_ms, end_ms = T0 + start, T0 + start + length
    got = shape.to_grid(frame, start_ms, end_ms, step)
    want = by_loop(frame, start_ms, end_ms, step) if len(frame) else {}
    assert len(got) == len(want)
    for row in got.itertuples(index=False):
        expected = want[(row.series_id, row.ts)]
        assert (math.isnan(row.value) and math.isnan(expected)) or row.value == expected
        assert row.instance == f"node-{row.series_id[2:]}"  # each grid row keeps its own series' labels
    assert list(got["series_id"]) == sorted(got["series_id"])  # series by series, in id order
