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


def test_past_picture_rows_the_least_complete_series_are_drawn(tmp_path, monkeypatch):
    """More series than the picture can hold rows for: it draws the least complete ones, the emptiest on top
    (before, it drew every series: 1,000,000 rows took 13 GB and most of an export's time)."""
    from healthpipe.ml import export

    monkeypatch.setattr(export, "PICTURE_ROWS", 2)
    coverage = Coverage(T0, T0 + STEP * BINS, STEP)
    full = np.ones(BINS, dtype=bool)
    coverage.add(grid_frame("a-complete", full), "value")
    coverage.add(grid_frame("b-stops-halfway", np.arange(BINS) < BINS // 2), "value")
    coverage.add(grid_frame("c-never", ~full), "value")
    left, top, right, bottom = coverage.picture(tmp_path / "c.png", "coverage")
    image = matplotlib.image.imread(tmp_path / "c.png")[top:bottom, left:right, :3]
    rows = np.array_split(np.arange(image.shape[0]), 2)  # c (none present), then b (half)
    width = image.shape[1]

    def colour(row: int, x0: float, x1: float) -> np.ndarray:
        return image[rows[row][2:-2], int(x0 * width) + 2:int(x1 * width) - 2].reshape(-1, 3).mean(axis=0)

    def red(rgb) -> bool:
        return rgb[0] > rgb[1] + 0.2 and rgb[0] > rgb[2]

    assert red(colour(0, 0, 1)) and red(colour(1, 0.5, 1)) and not red(colour(1, 0, 0.5))


def test_the_table_counts_across_chunks_as_a_plain_computation_does():
    """Series arriving in several chunks, in any order, some points missing: present, expected and the longest
    gap (from the range's start, between present points, and to its end) equal a per-series loop's."""
    rng = np.random.default_rng(7)
    end = T0 + STEP * BINS
    coverage = Coverage(T0, end, STEP)
    truth: dict[str, list[tuple[int, bool]]] = {}
    for chunk in np.array_split(np.arange(1, BINS + 1), 4):
        parts = []
        for s in rng.permutation(30)[:25]:  # not every series in every chunk
            sid = f"s{s:02d}"
            ts = T0 + STEP * chunk
            present = rng.random(len(chunk)) < 0.8
            truth.setdefault(sid, []).extend(zip(ts.tolist(), present.tolist(), strict=True))
            parts.append(pd.DataFrame({"series_id": sid, "ts": pd.to_datetime(ts, unit="ms", utc=True),
                                       "value": np.where(present, 1.0, np.nan), "query": "q", "metric": "m"}))
        coverage.add(pd.concat(parts).sample(frac=1, random_state=1), "value")  # rows in no particular order
    table = coverage.table().set_index("series_id")
    assert sorted(table.index) == sorted(truth) and list(table.index) == sorted(truth)
    for sid, points in truth.items():
        seen = sorted(t for t, p in points if p)
        gaps = np.diff([T0, *seen, end])
        assert table.loc[sid, "expected"] == len(points) and table.loc[sid, "present"] == len(seen), sid
        assert table.loc[sid, "longest_gap_s"] == gaps.max() / 1000, sid


def test_the_picture_counts_per_bin_equal_a_plain_computation_across_chunks(monkeypatch):
    """The picture's per-bin counts live in a spill file, one record per (series, bin) a chunk touched, and are
    read back in blocks: a bin cut by two chunks, and a read spread over many blocks, still sum to what a dense
    per-series count says (kept in memory as a matrix they were 1.2 GB at 1,000,000 series)."""
    from healthpipe.ml import export

    monkeypatch.setattr(export, "SPILL_READ", 7)  # many blocks, the last one short
    rng = np.random.default_rng(11)
    end = T0 + STEP * BINS * 3  # three grid points a bin
    coverage = Coverage(T0, end, STEP)
    points = np.arange(1, BINS * 3 + 1)
    truth = {f"s{s:02d}": (np.zeros(BINS, int), np.zeros(BINS, int)) for s in range(12)}
    for chunk in np.array_split(points, 5):  # 5 chunks of 72 points: chunk edges fall inside bins
        parts = []
        for sid, (expected, present) in truth.items():
            here = rng.random(len(chunk)) < 0.9
            mask = rng.random(len(chunk)) < 0.7
            np.add.at(expected, (chunk[here] - 1) // 3, 1)
            np.add.at(present, (chunk[here & mask] - 1) // 3, 1)
            parts.append(pd.DataFrame({"series_id": sid, "ts": pd.to_datetime(T0 + STEP * chunk[here], unit="ms",
                                                                              utc=True),
                                       "value": np.where(mask[here], 1.0, np.nan), "query": "q", "metric": "m"}))
        coverage.add(pd.concat(parts).sample(frac=1, random_state=2), "value")
    sids = sorted(truth, reverse=True)
    expected, present = coverage._bin_counts(coverage.rows_of_ids(np.array(sids)).tolist())
    assert expected.tolist() == [truth[s][0].tolist() for s in sids]
    assert present.tolist() == [truth[s][1].tolist() for s in sids]
    coverage.close()


def test_the_csv_written_in_blocks_is_the_table(tmp_path, monkeypatch):
    """completeness.csv is built TABLE_BLOCK series at a time (a million-row table at once was ~300 MB): with blocks
    of 7 series it is still exactly table(), one header, every series once, in series_id order."""
    from healthpipe.ml import export

    monkeypatch.setattr(export, "TABLE_BLOCK", 7)
    rng = np.random.default_rng(3)
    coverage = Coverage(T0, T0 + STEP * BINS, STEP)
    for sid in rng.permutation([f"{s:016x}" for s in range(30)]):
        coverage.add(grid_frame(str(sid), rng.random(BINS) < 0.5), "value")
    coverage.write_csv(tmp_path / "c.csv")
    written = pd.read_csv(tmp_path / "c.csv", dtype={"series_id": str})
    pd.testing.assert_frame_equal(written, coverage.table().astype({"expected": "int64"}), check_dtype=False)
    assert written["series_id"].tolist() == sorted(f"{s:016x}" for s in range(30))
    coverage.close()
