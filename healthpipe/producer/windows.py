"""Which time window each query reads next. Pure arithmetic on milliseconds, so it is easy to test.

Every window is (start, end]: left-open, right-closed. A query's watermark is the `end` of the last
window it published, so consecutive windows tile time with no gap and no overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

# Prometheus refuses more than 11,000 points per series in one query_range request; stay below it.
MAX_POINTS_PER_REQUEST = 10_000
RAW_MIN_CHUNK_MS = 1000


@dataclass(frozen=True, slots=True)
class Window:
    start_ms: int  # exclusive
    end_ms: int  # inclusive

    @property
    def seconds(self) -> float:
        return (self.end_ms - self.start_ms) / 1000


def align_down(ms: int, step_ms: int) -> int:
    return ms - ms % step_ms


def align_up(ms: int, step_ms: int) -> int:
    return -(-ms // step_ms) * step_ms


def first_watermark(now_ms: int, max_backfill_ms: int, step_ms: int) -> int:
    """Where a query with no stored watermark starts: max_backfill ago, on the step grid."""
    return align_down(now_ms - max_backfill_ms, step_ms)


def read_limit(now_ms: int, lag_ms: int, step_ms: int) -> int:
    """The newest instant we may read: now - lag, on the step grid (late scrapes land before it)."""
    return align_down(now_ms - lag_ms, step_ms)


def chunk_ms(mode: str, step_ms: int, raw_chunk_ms: int) -> int:
    if mode == "range":
        return step_ms * MAX_POINTS_PER_REQUEST
    return max(RAW_MIN_CHUNK_MS, raw_chunk_ms)


def pending_windows(watermark_ms: int, limit_ms: int, size_ms: int) -> list[Window]:
    """The windows from the watermark up to the read limit, each at most `size_ms` long."""
    windows = []
    start = watermark_ms
    while start < limit_ms:
        end = min(start + size_ms, limit_ms)
        windows.append(Window(start, end))
        start = end
    return windows


def range_points(window: Window, step_ms: int) -> tuple[int, int] | None:
    """The first and last grid point inside (start, end] for query_range, or None if there is none."""
    first = align_up(window.start_ms + 1, step_ms)
    last = align_down(window.end_ms, step_ms)
    return (first, last) if first <= last else None


def split_window(window: Window, grid_ms: int, smallest_ms: int) -> tuple[Window, Window] | None:
    """Two consecutive windows covering `window`, split on the grid near its middle; None when a half would be
    shorter than `smallest_ms` or no grid point lies strictly inside it (a read cannot get smaller by time)."""
    if window.end_ms - window.start_ms < 2 * smallest_ms:
        return None
    middle = align_down(window.start_ms + (window.end_ms - window.start_ms) // 2, grid_ms)
    if not window.start_ms < middle < window.end_ms:
        return None
    return Window(window.start_ms, middle), Window(middle, window.end_ms)
