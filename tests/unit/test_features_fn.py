"""The one feature function (healthpipe/ml/features.py): right, and the same bits however windows are batched —
what lets the feature server (a request's series in one call) and the export (2,048 grid windows a call) agree."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from healthpipe.ml import features
from healthpipe.ml.data import feature_rows

values = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, width=64)
window = st.lists(st.tuples(st.integers(1, 10_000), values), min_size=0, max_size=40).map(
    lambda pairs: (np.cumsum([p[0] for p in pairs], dtype=np.int64) + 1_700_000_000_000,
                   np.array([p[1] for p in pairs], dtype=np.float64)))


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@given(st.lists(window, min_size=1, max_size=6), st.integers(0, 5))
@settings(max_examples=200, deadline=None)
def test_a_window_among_others_gives_the_same_bits_as_alone(windows, pick):
    pick %= len(windows)
    ts = np.concatenate([w[0] for w in windows])
    vs = np.concatenate([w[1] for w in windows])
    at = np.array([int(w[0][-1]) + 500 if len(w[0]) else 1_700_000_000_000 for w in windows])
    together = features.compute_windows(ts, vs, np.array([len(w[0]) for w in windows]), at)
    alone = features.compute(windows[pick][0], windows[pick][1], int(at[pick]))
    for name in features.NAMES:
        assert _same(float(together[name][pick]), float(alone[name])), name


@given(window)
@settings(max_examples=200, deadline=None)
def test_the_features_are_what_their_definitions_say(w):
    ts, vs = w
    at = int(ts[-1]) + 1_500 if len(ts) else 1_700_000_000_000
    got = features.compute(ts, vs, at)
    if len(vs) == 0:
        assert got["count"] == 0 and all(math.isnan(got[n]) for n in features.NAMES if n != "count")
        return
    assert got["count"] == len(vs) and got["last"] == vs[-1] and got["staleness_s"] == 1.5
    assert got["min"] == vs.min() and got["max"] == vs.max()
    scale = max(1.0, float(np.abs(vs).max()))
    assert math.isclose(got["mean"], math.fsum(vs) / len(vs), rel_tol=1e-9, abs_tol=1e-9 * scale)
    assert math.isclose(got["stddev"], float(np.std(vs)), rel_tol=1e-6, abs_tol=1e-6 * scale)
    t = (ts - ts[0]) / 1000.0
    if len(vs) >= 2 and np.ptp(t) > 0:
        want = np.polyfit(t, vs, 1)[0]
        assert math.isclose(got["slope"], want, rel_tol=1e-6, abs_tol=1e-6 * scale / max(1.0, float(np.ptp(t))))
    else:
        assert math.isnan(got["slope"])


def test_the_grid_export_computes_each_window_as_the_function_does_alone():
    rng = np.random.default_rng(3)
    rows = [(f"s{s}", int(t), float(rng.normal())) for s in range(3)
            for t in sorted(rng.choice(600, 200, False) * 1000)]
    frame = pd.DataFrame(rows, columns=["series_id", "ts", "value"]).assign(query="q", metric="m", metric_type="g")
    grid = np.arange(0, 601_000, 7_000, dtype=np.int64)
    out = feature_rows(frame, grid, 60_000)
    assert len(out) == 3 * len(grid)
    for row in out:
        mine = frame[frame.series_id == row["series_id"]].sort_values("ts")
        ts, vs = mine.ts.to_numpy(np.int64), mine.value.to_numpy()
        s = features.window_slice(ts, row["ts"], 60_000)
        want = features.compute(ts[s], vs[s], row["ts"])
        assert all(_same(float(row[n]), float(want[n])) for n in features.NAMES), row
