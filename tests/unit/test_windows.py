from hypothesis import given
from hypothesis import strategies as st

from healthpipe.producer.windows import (
    MAX_POINTS_PER_REQUEST,
    Window,
    align_down,
    align_up,
    chunk_ms,
    first_watermark,
    pending_windows,
    range_points,
    read_limit,
)


def test_alignment():
    assert align_down(15_999, 15_000) == 15_000
    assert align_up(15_001, 15_000) == 30_000
    assert align_up(15_000, 15_000) == 15_000
    assert first_watermark(now_ms=100_000, max_backfill_ms=40_000, step_ms=15_000) == 60_000
    assert read_limit(now_ms=100_000, lag_ms=10_000, step_ms=15_000) == 90_000


@given(st.integers(0, 10**12), st.integers(0, 10**9), st.integers(1, 1000))
def test_windows_tile_time_without_gap_or_overlap(watermark, span, pieces):
    size = max(1, span // pieces)  # at most ~1000 windows per example
    limit = watermark + span
    windows = pending_windows(watermark, limit, size)
    if span == 0:
        assert windows == []
        return
    assert windows[0].start_ms == watermark and windows[-1].end_ms == limit
    assert all(a.end_ms == b.start_ms for a, b in zip(windows, windows[1:], strict=False))
    assert all(0 < w.end_ms - w.start_ms <= size for w in windows)


@given(st.integers(1, 3_600_000), st.integers(0, 10**12))
def test_range_chunks_stay_under_prometheus_point_limit(step, start):
    size = chunk_ms("range", step, raw_chunk_ms=1)
    first_last = range_points(Window(start, start + size), step)
    assert first_last is not None
    first, last = first_last
    assert (last - first) // step + 1 <= MAX_POINTS_PER_REQUEST < 11_000


def test_range_points_are_left_open_right_closed():
    assert range_points(Window(15_000, 45_000), 15_000) == (30_000, 45_000)
    assert range_points(Window(15_000, 29_999), 15_000) is None
    # a watermark off the grid (the step changed) still never repeats a point
    assert range_points(Window(16_000, 60_000), 15_000) == (30_000, 60_000)


@given(st.integers(0, 10**12), st.integers(1, 10**8), st.sampled_from([1, 1000, 15_000]))
def test_a_split_window_is_two_consecutive_windows_on_the_grid(start, span, grid):
    from healthpipe.producer.windows import split_window

    start = align_down(start, grid)
    window = Window(start, start + span)
    halves = split_window(window, grid, smallest_ms=1000)
    middle = align_down(start + span // 2, grid)
    if halves is None:  # too short, or no grid point strictly inside
        assert span < 2000 or not start < middle < start + span
        return
    first, second = halves
    assert (first.start_ms, first.end_ms, second.end_ms) == (window.start_ms, second.start_ms, window.end_ms)
    assert first.end_ms % grid == 0 and window.start_ms < first.end_ms < window.end_ms
