"""DataTransformer (the plan's SimpleDataTransformer): series windows → clean InfluxDB points.

Cleaning drops, and counts by reason, every sample InfluxDB must not get:
  null            the value is missing (null or an empty string)
  not_a_number    the value is not a number at all
  nan / inf       NaN or ±Inf: InfluxDB cannot store them
  bad_timestamp   not an integer, or ≤ 0
  future_timestamp further ahead than transform.max_future_skew_seconds
  metric_not_allowed the metric is not in transform.valid_metrics
  duplicate       the same (metric, labels, timestamp) twice in one batch: the first one is kept
Nothing is dropped silently: `TransformResult.dropped` carries the counts, which the consumer turns
into metrics and a per-batch log line.

Formatting is deterministic: the same sample always becomes the same point (same measurement, tag
set and timestamp), so a re-delivery overwrites it in InfluxDB instead of adding a second one.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

# numpy and pandas are imported where used: with the compiled engine the consumer never needs them, and
# numpy's import (plus the BLAS thread it starts) was a third of the consumer's start-up CPU
from healthpipe.common.config import TransformSettings

if TYPE_CHECKING:
    import pandas as pd
from healthpipe import schema as line_protocol
from healthpipe.common.bounded import BoundedCache
from healthpipe.common.messages import RawSamples, SeriesWindow
from healthpipe.schema import fastline as _fastline  # the compiled hot path, or None where it was not built


@dataclass
class TransformResult:
    lines: list[str]
    sources: list[int] = field(default_factory=list)  # per line: index of its window in the batch
    dropped: Counter = field(default_factory=Counter)
    samples_in: int = 0

    @property
    def samples_out(self) -> int:
        return len(self.lines)


@dataclass
class TransformBodies:
    """TransformResult's lines as bytes, window by window: what the consumer posts (see transform_bodies)."""

    bodies: list[tuple[int, bytes, int]]  # (index of the window in the batch, its lines each ending "\n", how many)
    dropped: Counter = field(default_factory=Counter)
    samples_in: int = 0


class DataTransformer:
    def __init__(self, settings: TransformSettings | None = None, clock=time.time):
        self.settings = settings or TransformSettings()
        self.clock = clock
        self._valid = set(self.settings.valid_metrics)
        # Series whose tag strings are kept (~2 KB each, bench/memory.py): caps the consumer's memory under high
        # cardinality and churn; a series pushed out only costs one tag-set rebuild when it comes back.
        self.prefix_cache: BoundedCache[tuple, str] = BoundedCache("series_prefixes", self.settings.series_cache_size)

    # --- the plan's API ----------------------------------------------------------------------------

    def transform(self, raw_data: Sequence[SeriesWindow]) -> TransformResult:
        """Clean and format a batch of series windows.

        The fast engine (the default) cleans and formats window by window with numpy; a batch with anything
        unusual in it (a value or timestamp that is not a plain number, a repeated timestamp, a sample from the
        future) goes through the reference engine (pandas, the plan's `_clean_data` and `_to_influxdb_format`),
        whose output the fast one matches byte for byte (tests/unit/test_transform_engines.py).
        `transform.engine: reference` uses the reference for every batch."""
        if self.settings.engine in ("fast", "python"):
            result = self._transform_fast(raw_data, compiled=self.settings.engine == "fast" and _fastline is not None)
            if isinstance(result, TransformResult):
                return result
        return self.transform_reference(raw_data)

    def transform_bodies(self, raw_data: Sequence[SeriesWindow]) -> TransformBodies:
        """transform(), with each window's lines as one bytes body: `b"".join` of the bodies is exactly
        `"\n".join(lines) + "\n"` encoded. The compiled engine builds the bytes directly (no str per line, no
        join and encode per request: ~0.06 CPU-s per million samples); the other engines' lines are encoded."""
        if self.settings.engine == "fast" and _fastline is not None:
            result = self._transform_fast(raw_data, compiled=True, bodies=True)
            if isinstance(result, TransformBodies):
                return result
        return bodies_of(self.transform(raw_data))

    def points(self, raw_data: Sequence[SeriesWindow]) -> list[tuple[int, list[int], list[float]]]:
        """What InfluxDB will hold for these windows, as (index of the window in the batch, timestamps, values):
        the very lines the consumer writes (transform_bodies), read back. The feature server's stream store
        takes its samples from here, so it keeps exactly what the consumer keeps and drops what it drops."""
        out = []
        for i, body, _ in self.transform_bodies(raw_data).bodies:
            ts: list[int] = []
            values: list[float] = []
            for line in body.splitlines():
                # `prefix value=V T`: the prefix escapes its spaces, the field and the timestamp have none
                _, field, stamp = line.rsplit(b" ", 2)
                ts.append(int(stamp))
                values.append(float(field[len(line_protocol.FIELD) + 1:]))
            out.append((i, ts, values))
        return out

    def _transform_fast(self, windows: Sequence[SeriesWindow], compiled: bool = False,
                        bodies: bool = False) -> TransformResult | TransformBodies | None:
        """The common case in one pass per window; None when the batch needs the reference engine.
        `compiled`: each window through healthpipe/schema/_fastline.c (the same steps in C); `bodies`: as bytes."""
        assert compiled or not bodies, "bodies come from the compiled engine"
        if not compiled:
            import numpy as np
        out: list[tuple[int, bytes, int]] = []
        lines: list[str] = []
        sources: list[int] = []
        dropped: Counter = Counter()
        samples_in = 0
        horizon_ms = (self.clock() + self.settings.max_future_skew_seconds) * 1000
        spans: dict[str, tuple[int, int]] = {}  # per series: the timestamps already seen in this batch
        for i, w in enumerate(windows):
            n = len(w.samples)
            samples_in += n
            if n == 0:
                continue
            prefix, allowed = self.prefix_of(w)
            if not allowed:
                dropped["metric_not_allowed"] += n
                continue
            if compiled:
                done = _compiled_window(prefix, w, horizon_ms, bodies)
                if done is None:
                    return None
                payload, n_lines, n_nan, n_inf, first, last = done
                seen = spans.get(prefix)
                if seen is not None and not (first > seen[1] or last < seen[0]):
                    return None
                spans[prefix] = (min(first, seen[0]), max(last, seen[1])) if seen else (first, last)
                if n_nan:
                    dropped["nan"] += n_nan
                if n_inf:
                    dropped["inf"] += n_inf
                if not bodies:
                    lines.extend(payload)
                    sources.extend([i] * n_lines)
                elif n_lines:
                    out.append((i, payload, n_lines))
                continue
            ts_list = [s[0] for s in w.samples]
            texts = [s[1] for s in w.samples]
            if set(map(type, ts_list)) != {int} or set(map(type, texts)) != {str}:
                return None
            joined = "".join(texts)
            if not joined.isascii() or "_" in joined:  # Python's float() takes 1_000 and other digits; pandas not
                return None
            ts = np.array(ts_list, dtype=np.int64)
            if ts[0] <= 0 or (n > 1 and np.any(np.diff(ts) <= 0)) or ts[-1] > horizon_ms:
                return None
            first, last = int(ts[0]), int(ts[-1])
            seen = spans.get(prefix)
            if seen is not None and not (first > seen[1] or last < seen[0]):
                return None  # the same series twice with overlapping times: duplicates are the reference's job
            spans[prefix] = (min(first, seen[0]), max(last, seen[1])) if seen else (first, last)
            try:
                values = np.array(texts, dtype=np.float64)
            except ValueError:
                return None
            if np.any(np.signbit(values) & (values == 0)):
                return None  # "-0": pandas reads it as the integer 0, float() as -0.0: the reference decides
            finite = np.isfinite(values)
            if not finite.all():
                nan = np.isnan(values)
                n_nan, n_inf = int(nan.sum()), int((~finite & ~nan).sum())
                if n_nan:
                    dropped["nan"] += n_nan
                if n_inf:
                    dropped["inf"] += n_inf
                values, ts = values[finite], ts[finite]
            field = f"{prefix} {line_protocol.FIELD}="
            lines.extend([f"{field}{v!r} {t}" for v, t in zip(values.tolist(), ts.tolist(), strict=True)])
            sources.extend([i] * len(values))
        if bodies:
            return TransformBodies(out, dropped, samples_in)
        return TransformResult(lines, sources, dropped, samples_in)

    def transform_reference(self, raw_data: Sequence[SeriesWindow]) -> TransformResult:
        """The reference engine: the plan's pandas pipeline, exact for every input."""
        df = self._to_frame(raw_data)
        samples_in = len(df)
        clean, dropped = self._clean_data(df)
        return TransformResult(self._to_influxdb_format(clean), clean["src"].tolist(), dropped, samples_in)

    def _clean_data(self, df: pd.DataFrame) -> tuple[pd.DataFrame, Counter]:
        """Drop what InfluxDB must not get; return the rest and the drop counts by reason."""
        import numpy as np
        import pandas as pd

        dropped: Counter = Counter()
        reason = pd.Series(None, index=df.index, dtype=object)

        def mark(mask: pd.Series, why: str) -> None:
            new = mask & reason.isna()
            if new.any():
                reason[new] = why
                dropped[why] += int(new.sum())

        mark(~df["allowed"], "metric_not_allowed")
        ts = pd.to_numeric(df["ts"], errors="coerce")
        integral = ts.notna() & (ts == np.floor(ts.fillna(0)))
        mark(~integral | (ts <= 0), "bad_timestamp")
        horizon_ms = (self.clock() + self.settings.max_future_skew_seconds) * 1000
        mark(ts > horizon_ms, "future_timestamp")
        raw = df["value"]
        value = pd.to_numeric(raw, errors="coerce")
        # Only values that did not parse need a closer look (string ops are the costly part of cleaning).
        unparsed = value.isna()
        if unparsed.any():
            text = raw[unparsed].astype(str).str.strip()
            null = raw[unparsed].isna() | (text == "")
            mark(null.reindex(df.index, fill_value=False), "null")
            not_nan_text = ~text.str.lower().isin({"nan", "+nan", "-nan"})
            mark(not_nan_text.reindex(df.index, fill_value=False), "not_a_number")
            mark(unparsed, "nan")
        mark(np.isinf(value.fillna(0)), "inf")
        keep = reason.isna()
        clean = df.loc[keep, ["prefix", "src"]].assign(ts=ts[keep].astype("int64"), value=value[keep].astype(float))
        duplicated = clean.duplicated(subset=["prefix", "ts"], keep="first")
        if duplicated.any():
            dropped["duplicate"] += int(duplicated.sum())
            clean = clean[~duplicated]
        return clean, dropped

    def _to_influxdb_format(self, df: pd.DataFrame) -> list[str]:
        """Line protocol, one line per sample, millisecond timestamps."""
        return line_protocol.lines(df["prefix"].tolist(), df["value"].tolist(), df["ts"].tolist())

    # --- helpers -----------------------------------------------------------------------------------

    def tags(self, window: SeriesWindow) -> dict[str, str]:
        """The tag set of a series: service, instance, metric_type, metric, then the other labels."""
        return line_protocol.tags_of(window.query, window.metric_type, window.labels, self.settings.include_labels,
                                     self.settings.exclude_labels)

    def prefix_of(self, window: SeriesWindow) -> tuple[str, bool]:
        """The series' line-protocol prefix (cached), and whether its metric may enter InfluxDB."""
        cache_key = series_key(window)
        prefix = self.prefix_cache.get(cache_key)
        if prefix is None:
            prefix = self.prefix_cache.put(cache_key, line_protocol.series_prefix(self.tags(window).items()))
        metric = line_protocol.metric_of(window.query, window.labels)
        return prefix, (not self._valid or metric in self._valid)

    def _to_frame(self, windows: Sequence[SeriesWindow]) -> pd.DataFrame:
        import pandas as pd

        prefixes, allowed, src, ts, values = [], [], [], [], []
        for i, w in enumerate(windows):
            prefix, ok = self.prefix_of(w)
            n = len(w.samples)
            prefixes.extend([prefix] * n)
            src.extend([i] * n)
            allowed.extend([ok] * n)
            for t, v in w.samples:
                ts.append(t)
                values.append(v)
        return pd.DataFrame({"prefix": prefixes, "allowed": allowed, "src": src,
                             "ts": pd.Series(ts, dtype=object), "value": pd.Series(values, dtype=object)})


def series_key(window: SeriesWindow) -> tuple:
    """What identifies a series to the tag cache: the query, its metric type and its labels in order."""
    return (window.query, window.metric_type, tuple(sorted(window.labels.items())))


def _compiled_window(prefix: str, w: SeriesWindow, horizon_ms: float, body: bool) -> tuple | None:
    """One window through the compiled fast path (healthpipe/schema/_fastline.c): (its lines, or one bytes body
    when `body`; how many lines; NaN and Inf dropped; first and last timestamp), or None when it needs the
    reference engine."""
    if isinstance(w.samples, RawSamples):
        if body:
            return _fastline.format_body(prefix, w.samples.text, horizon_ms)
        done = _fastline.format_text(prefix, w.samples.text, horizon_ms)
    else:  # samples that did not stay JSON text (rare)
        done = _fastline.format_window(prefix, w.samples if isinstance(w.samples, list) else list(w.samples),
                                       horizon_ms)
    if done is None:
        return None
    lines, n_nan, n_inf, first, last = done
    return (_body(lines) if body else lines), len(lines), n_nan, n_inf, first, last


def _body(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode() if lines else b""


def bodies_of(result: TransformResult) -> TransformBodies:
    """A TransformResult's lines as bodies, window by window (consecutive lines of one window: one body)."""
    out: list[tuple[int, bytes, int]] = []
    start = 0
    for end in range(1, len(result.lines) + 1):
        if end == len(result.lines) or result.sources[end] != result.sources[start]:
            out.append((result.sources[start], _body(result.lines[start:end]), end - start))
            start = end
    return TransformBodies(out, result.dropped, result.samples_in)
