"""The completeness picture shows what its caption says: one row per series, time left to right, green where the
grid points are present and red where they are missing. Read back from the PNG's pixels, not its file size."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from healthpipe.ml.export import BINS, Coverage

pytestmark = pytest.mark.unit

T0 = 1_700_000_000_000
STEP = 10_000


def grid_frame(series_id: str, present: np.ndarray) -> pd.DataFrame:
    """One series on BINS grid points, its value null where `present` is false."""
    ts = T0 + STEP * np.arange(1, BINS + 1)
    return pd.DataFrame({"series_id": series_id, "ts": pd.to_datetime(ts, unit="ms", utc=True),
                         "value": np.where(present, 1.0, np.nan), "query": "q", "metric": "m"})


def test_green_where_present_red_where_missing_one_row_per_series(tmp_path):
    coverage = Coverage(T0, T0 + STEP * BINS, STEP)
    full = np.ones(BINS, dtype=bool)
    first_half = np.arange(BINS) < BINS // 2
    coverage.add(grid_frame("a-complete", full), "value")
    coverage.add(grid_frame("b-stops-halfway", first_half), "value")
    coverage.add(grid_frame("c-never", ~full), "value")
    left, top, right, bottom = coverage.picture(tmp_path / "c.png", "coverage")
    image = matplotlib.image.imread(tmp_path / "c.png")[top:bottom, left:right, :3]
    rows = np.array_split(np.arange(image.shape[0]), 3)  # sorted by series id: a, b, c from the top
    width = image.shape[1]

    def colour(row: int, x0: float, x1: float) -> np.ndarray:
        cells = image[rows[row][2:-2], int(x0 * width) + 2:int(x1 * width) - 2]
        return cells.reshape(-1, 3).mean(axis=0)

    def green(rgb) -> bool:  # RdYlGn at 1: dark green
        return rgb[1] > rgb[0] + 0.2 and rgb[1] > rgb[2]

    def red(rgb) -> bool:  # RdYlGn at 0: dark red
        return rgb[0] > rgb[1] + 0.2 and rgb[0] > rgb[2]

    assert green(colour(0, 0, 1)), colour(0, 0, 1)
    assert green(colour(1, 0, 0.5)) and red(colour(1, 0.5, 1)), (colour(1, 0, 0.5), colour(1, 0.5, 1))
    assert red(colour(2, 0, 1)), colour(2, 0, 1)
    table = coverage.table()
    assert table["present"].tolist() == [BINS, BINS // 2, 0] and table["expected"].tolist() == [BINS] * 3
