"""healthpipe's data for notebooks: training frames across the tiers, and the online features of a window.

    from healthpipe.ml.data import load_frame, latest_window

    df = load_frame("2026-11-25T00:00:00Z", "2026-11-26T00:00:00Z", queries=["availability"], step="1m")
    feats = latest_window({"query": "request_rate", "method": "GET"}, window="5m")

`load_frame` has the semantics of `healthpipe export` (docs/ml.md), without files: long format by default,
`step` puts every series on a regular grid (last observation within 5 minutes; gaps stay null), `as_of` keeps
only samples with timestamp ≤ as_of, `wide` pivots to one column per series. `latest_window` computes the
features of `healthpipe.ml.features` from the hot bucket, exactly as `healthpipe features serve` does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pandas as pd

from healthpipe.common.config import HealthpipeConfig, QuerySettings, load_config
from healthpipe.common.errors import ConfigError
from healthpipe.common.flux import query_predicate, read_frame
from healthpipe.common.times import parse_duration, parse_time
from healthpipe.ml import features as feature_fn
from healthpipe.ml import shape
from healthpipe.ml.tiers_read import Part, plan, read
from healthpipe.ml.window_cache import WindowCache


def _ms(t: str | float | pd.Timestamp | None) -> int | None:
    """An instant as given by a notebook (ISO text, unix seconds, a Timestamp) in epoch ms."""
    if t is None:
        return None
    if isinstance(t, pd.Timestamp):
        return int(t.timestamp() * 1000)
    return parse_time(str(t))


def _step_ms(step: str | float | None) -> int | None:
    if step is None:
        return None
    try:
        ms = int(parse_duration(step) * 1000)
    except ValueError as exc:
        raise ConfigError(f"--step: {exc}") from None
    if ms <= 0:
        raise ConfigError(f"--step must be positive, got {step!r}")
    return ms


def check_range(start_ms: int, end_ms: int, as_of_ms: int | None) -> None:
    if start_ms >= end_ms:
        raise ConfigError(f"--from must be before --to ({start_ms} >= {end_ms})")
    if as_of_ms is not None and not start_ms < as_of_ms <= end_ms:
        raise ConfigError("--as-of must lie inside (--from, --to]")


HOUR_MS = 3_600_000
MINUTE_MS = 60_000
MAX_CHUNK_MS = 7 * 24 * HOUR_MS
CHUNK_ROWS = 300_000  # rows a chunk aims at
FRAME_ROWS = 100_000  # rows of a frame read from InfluxDB: memory is bounded by this, whatever the range and the
# series count (a million series in one process: frames of 300,000 rows peaked at 745 MB, of 100,000 at 602; B13)


def chunks(cfg: HealthpipeConfig, queries: list[QuerySettings], start_ms: int, end_ms: int, step_ms: int | None,
           as_of_ms: int | None = None, rate_counters: bool = False, feature_window_ms: int | None = None,
           now_ms: int | None = None, chunk_rows: int | None = None, snapshot_id: int | None = None,
           whole_chunks: bool = False) -> Iterator[tuple[Part, pd.DataFrame, bool]]:
    """The export, chunk by chunk per query and tier: (the chunk, a frame of it, whether it is the chunk's last).

    Chunks are whole UTC minutes, the first one minute long, each next one sized from the rows the last one had
    (1 minute to 7 days; doubled after an empty one), aiming at `chunk_rows` rows. A chunk read from InfluxDB
    comes in frames of about FRAME_ROWS rows (at most `chunk_rows`), each series whole in one of them: a minute
    of a million series is a million rows (whole, 900 MB; B13). `whole_chunks`: one frame a chunk (the wide
    shape: a file's rows are its whole time range). Memory is bounded by a frame's rows, whatever the range and
    the series count (whole hours, as before, held every series' hour at once: 1.85 GB for 100,000 series)."""
    now_ms = now_ms or int(time.time() * 1000)
    chunk_rows = chunk_rows or CHUNK_ROWS
    cut_ms = min(end_ms, as_of_ms) if as_of_ms is not None else end_ms  # nothing newer than as-of is read at all
    parts = plan(cfg, start_ms, end_ms, step_ms, now_ms, snapshot_id)  # once: every query reads one snapshot
    most = MAX_CHUNK_MS // MINUTE_MS
    for q in queries:
        minutes = 1
        for part in parts:
            a = part.start_ms
            while a < part.end_ms:
                b = min((a // MINUTE_MS + minutes) * MINUTE_MS, part.end_ms)
                chunk = Part(part.tier, a, b, part.detail, part.snapshot_id)
                frames = _chunk(cfg, q, chunk, step_ms, cut_ms, rate_counters, feature_window_ms,
                                continued=a > start_ms, rows=None if whole_chunks else min(chunk_rows, FRAME_ROWS))
                rows = 0
                for frame, last in _with_last(frames):
                    rows += len(frame)
                    yield chunk, frame, last
                if rows:
                    minutes = int(min(most, max(1, chunk_rows * (b - a) / rows / MINUTE_MS)))
                else:  # nothing there: a quiet stretch is crossed in a few reads, not one a minute
                    minutes = min(most, minutes * 2)
                a = b


def _with_last(frames: Iterator[pd.DataFrame]) -> Iterator[tuple[pd.DataFrame, bool]]:
    """Each frame, and whether it is the last one."""
    previous = None
    for frame in frames:
        if previous is not None:
            yield previous, False
        previous = frame
    if previous is not None:
        yield previous, True


def _chunk(cfg: HealthpipeConfig, q: QuerySettings, part: Part, step_ms: int | None, cut_ms: int,
           rate_counters: bool, feature_window_ms: int | None, continued: bool = False,
           rows: int | None = None) -> Iterator[pd.DataFrame]:
    """The chunk's rows, in frames that each hold whole series (at least one frame)."""
    lookback = feature_window_ms or (shape.STALENESS_MS if step_ms else 0)
    if step_ms and rate_counters:
        lookback += step_ms  # the previous grid observation of a counter, for its first rate
    elif rate_counters and continued:
        # a chunk that continues the range: its first raw sample's rate needs the previous chunk's last sample
        # (without it each chunk boundary lost one rate per series); the range's own first sample has none
        lookback = max(lookback, shape.STALENESS_MS)
    read_to = min(part.end_ms, cut_ms)
    if read_to <= part.start_ms - lookback:
        yield shape.finish(pd.DataFrame())
        return
    pushdown = step_ms if (step_ms and not feature_window_ms and part.tier != "cold") else None
    for raw in read(cfg, q, Part(part.tier, part.start_ms - lookback, read_to, snapshot_id=part.snapshot_id),
                    last_every_ms=pushdown, rows=rows):
        yield _shaped(cfg, q, raw, part, step_ms, pushdown, rate_counters, feature_window_ms)


def _shaped(cfg: HealthpipeConfig, q: QuerySettings, raw: pd.DataFrame, part: Part, step_ms: int | None,
            pushdown: int | None, rate_counters: bool, feature_window_ms: int | None) -> pd.DataFrame:
    """Whole series read for a chunk (with their lookback), as the export's rows of that chunk."""
    frame = shape.identify(raw, q)
    if step_ms and not pushdown and not feature_window_ms:
        frame = shape.reduce_to_step(frame, step_ms)  # raw (cold) samples: the same reduction InfluxDB does
    if rate_counters:
        frame = shape.rates(frame, cfg.tiers)
    if feature_window_ms:
        return features_on_grid(frame, part.start_ms, part.end_ms, step_ms or feature_window_ms, feature_window_ms)
    if step_ms:
        frame = shape.to_grid(frame, part.start_ms, part.end_ms, step_ms)
    else:
        frame = frame[frame["ts"] > part.start_ms] if len(frame) else frame
    return shape.finish(frame)


def features_on_grid(frame: pd.DataFrame, start_ms: int, end_ms: int, step_ms: int, window_ms: int) -> pd.DataFrame:
    """The shared features (healthpipe.ml.features) of each series at each grid point g, over (g - window, g]."""
    first = -(-(start_ms + 1) // step_ms) * step_ms
    grid = np.arange(first, end_ms + 1, step_ms, dtype=np.int64)
    return _feature_frame(feature_rows(frame, grid, window_ms))


def feature_rows(frame: pd.DataFrame, grid: np.ndarray, window_ms: int) -> list[dict]:
    """Per series (in series_id order) and grid point g: the series' columns but ts and value, `ts` = g, and the
    features of its samples in (g - window, g]."""
    if frame.empty or len(grid) == 0:
        return []
    series = shape.series_runs(frame)
    ts_all, values_all = series.ts, series.values
    meta_cols = [c for c in frame.columns if c not in ("ts", "value")]
    metas = frame.iloc[series.firsts][meta_cols].to_dict("records")
    # every (series, grid point) window as a run of sample indices, computed WINDOWS_PER_CALL at a time
    runs = list(zip(series.starts, series.ends, strict=True))
    lo = np.concatenate([a + np.searchsorted(ts_all[a:b], grid - window_ms, side="right") for a, b in runs])
    hi = np.concatenate([a + np.searchsorted(ts_all[a:b], grid, side="right") for a, b in runs])
    at = np.tile(grid, len(runs))
    rows: list[dict] = []
    for first in range(0, len(lo), WINDOWS_PER_CALL):
        part = slice(first, first + WINDOWS_PER_CALL)
        taken = window_indices(lo[part], hi[part])
        computed = feature_fn.compute_windows(ts_all[taken], values_all[taken], hi[part] - lo[part], at[part])
        columns = {n: computed[n].tolist() for n in feature_fn.NAMES}
        for j, g in enumerate(at[part].tolist()):
            rows.append({**metas[(first + j) // len(grid)], "ts": g, **{n: columns[n][j] for n in feature_fn.NAMES}})
    return rows


WINDOWS_PER_CALL = 2048  # windows of a grid overlap: their samples are copied per call, so memory stays bounded


def window_indices(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The sample indices of runs [lo[i], hi[i]) one after another (runs may overlap)."""
    lengths = hi - lo
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    return np.arange(total, dtype=np.int64) + np.repeat(lo - (np.cumsum(lengths) - lengths), lengths)


def _feature_frame(rows: list[dict]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame(columns=[c for c in shape.FIRST if c != "value"] + list(feature_fn.NAMES))
    out = pd.DataFrame(rows)
    out["ts"] = pd.to_datetime(out["ts"], unit="ms", utc=True).dt.as_unit("ms")
    labels = sorted(c for c in out.columns if c not in shape.FIRST and c not in feature_fn.NAMES)
    return out[[c for c in shape.FIRST if c != "value"] + list(feature_fn.NAMES) + labels]


def load_frame(from_, to, queries: list[str] | None = None, step: str | None = None, as_of=None, wide: bool = False,
               rate_counters: bool = False, cfg: HealthpipeConfig | None = None) -> pd.DataFrame:
    """The samples of `queries` (default: all configured) in (from_, to], as one DataFrame (see the module doc)."""
    cfg = cfg or load_config()
    start_ms, end_ms, as_of_ms = _ms(from_), _ms(to), _ms(as_of)
    assert start_ms is not None and end_ms is not None
    check_range(start_ms, end_ms, as_of_ms)
    frames = [f for _, f, _ in chunks(cfg, cfg.select_queries(queries), start_ms, end_ms, _step_ms(step), as_of_ms,
                                      rate_counters) if len(f)]
    frame = pd.concat(frames, ignore_index=True) if frames else shape.finish(pd.DataFrame())
    return shape.wide(frame) if wide else frame


def latest_window(series_selector: dict[str, str], window: str = "5m", at=None,
                  cfg: HealthpipeConfig | None = None, cache: WindowCache | None = None) -> pd.DataFrame:
    """Per matching series, the features of (at - window, at] from the hot bucket (`at` default: now).

    `series_selector`: {"query": NAME} and/or tag values to match, e.g. {"query": "request_rate", "method": "GET"}.
    `cache` (the feature server's): read only what InfluxDB holds beyond what earlier calls read (window_cache.py).
    """
    return _feature_frame(latest_features(series_selector, window, at, cfg, cache))


def latest_features(series_selector: dict[str, str], window: str = "5m", at=None,
                    cfg: HealthpipeConfig | None = None, cache: WindowCache | None = None,
                    at_ms: int | None = None) -> list[dict]:
    """latest_window's rows as dicts (the feature server answers from these without building a frame);
    `at_ms` instead of `at`: the instant in epoch ms, as the server has it."""
    cfg = cfg or load_config()
    window_ms = _step_ms(window)
    assert window_ms is not None
    if at_ms is None:
        at_ms = _ms(at) if at is not None else int(time.time() * 1000)
    assert at_ms is not None
    labels = {k: v for k, v in series_selector.items() if k != "query"}
    names = [series_selector["query"]] if "query" in series_selector else None
    rows: list[dict] = []
    for q in cfg.select_queries(names):
        def features(samples: pd.DataFrame) -> list[dict]:
            return feature_rows(samples, np.array([at_ms]), window_ms)

        if cache is not None:
            rows += cache.compute(q, labels, at_ms - window_ms, at_ms, features)
        else:
            rows += features(shape.identify(read_frame(cfg.load.influxdb, query_predicate(q, labels=labels),
                                                       at_ms - window_ms, at_ms), q))
    return rows
