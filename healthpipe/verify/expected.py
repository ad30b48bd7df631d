"""What InfluxDB must hold for a query and a time range: Prometheus' data put through the consumer's own rules.

The truth is what the producer would have published for the range (raw mode: the selector's stored samples,
`(start, end]` on the millisecond grid; range mode: `query_range` on the query's step grid), cleaned and
formatted by the consumer's `DataTransformer` itself (whitelist, NaN/Inf drops, tag mapping, the
line-protocol rule for values InfluxDB cannot represent). So "expected in InfluxDB" is exact by construction,
and a NaN is never reported missing.

A series is named by its line-protocol prefix (measurement + escaped tag set): the transformer writes it, and
the same prefix is rebuilt from the tags InfluxDB returns (`consumer.line_protocol.series_prefix`).

Screening is cheap: per series and window, a count and a sum, computed by Prometheus (`count_over_time`,
`sum_over_time` on raw selectors) or from the few range-mode points; only windows whose figures differ from
InfluxDB's are fetched sample by sample.

A raw window of more series than `extract.max_series_per_read` is verified in groups of series, the way the producer
reads it: by the values of `extract.split_label` (a `SeriesGroup`), so that what is held at once is one group's
figures, not the window's (1M series screened whole took 2.4 GB).
"""

from __future__ import annotations

import bisect
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from healthpipe.common.config import QuerySettings, TransformSettings
from healthpipe.common.errors import PrometheusTooLarge
from healthpipe.common.flux import MAX_REGEX_VALUES
from healthpipe.common.messages import SeriesWindow
from healthpipe.common.promql import with_label_in
from healthpipe.producer.extractor import PrometheusExtractor, Series
from healthpipe.producer.windows import Window, chunk_ms, pending_windows
from healthpipe.schema import representable, stored_tags, tag_key_of_label
from healthpipe.sinks.influx.transformer import DataTransformer


@dataclass(frozen=True, slots=True)
class Figures:
    """A screening summary of one series in one window."""

    count: int
    total: float  # NaN when any value is NaN (then the window is always compared sample by sample)

    def matches(self, other: Figures) -> bool:
        if self.count != other.count:
            return False
        if math.isnan(self.total) or math.isnan(other.total):
            return False
        return math.isclose(self.total, other.total, rel_tol=1e-12, abs_tol=1e-9)


@dataclass(frozen=True, slots=True)
class SeriesGroup:
    """The series of a raw query whose `label` is one of `values` ("" = the series without it) or starts with one of
    `prefixes` in Prometheus, and whose tag `tag` is one of `stored` (the values as InfluxDB stores them) or starts
    with one of `prefixes` in InfluxDB. A prefix is chosen so that both sides select the same series."""

    label: str
    tag: str
    values: tuple[str, ...]  # empty with no prefixes: a group of InfluxDB's values only (nothing to ask Prometheus)
    stored: tuple[str, ...]
    prefixes: tuple[str, ...] = ()


def groups_of(values: list[str], series: int, max_series: int, max_values: int = MAX_REGEX_VALUES
              ) -> list[tuple[str, ...]]:
    """`values` cut into as few consecutive groups as hold about `max_series` of `series` series each and at most
    `max_values` values (the largest regex Flux compiles)."""
    if not values:
        return []
    n = max(1, -(-series // max_series), -(-len(values) // max_values))
    size = -(-len(values) // n)
    return [tuple(values[i:i + size]) for i in range(0, len(values), size)]


# A prefix selects the same series in Prometheus (raw values) and InfluxDB (stored values) when the stored form of
# every value starting with it starts with it too, and back: it must read the same stored (`representable`) and
# hold none of the characters `representable` writes in place of others.
_REPLACEMENTS = ("\u2424", "\u240d", "\u29f5")


def _prefix_ok(prefix: str) -> bool:
    return bool(prefix) and representable(prefix) == prefix and not any(c in prefix for c in _REPLACEMENTS)


def pattern_groups(values: list[str], series: int, max_series: int, max_alternatives: int = MAX_REGEX_VALUES
                   ) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Sorted distinct `values` as about series / max_series groups of (exact values, prefixes): a whole branch of
    values sharing a prefix becomes that prefix (a regex InfluxDB matches against its index in a fraction of the time
    a list of values takes, and groups no longer capped by the list a regex may hold), the rest exact values. Every
    value is in one group; no value outside a group's branches starts with its prefixes."""
    if not values:
        return []
    n = max(1, -(-series // max_series))
    per_group = max(1, -(-len(values) // n))
    patterns: list[tuple[str, bool, int]] = []  # (text, is a prefix, values it stands for), in sorted order

    # a depth-first walk of the values' trie, in sorted order (a stack, not recursion: a label value may be long)
    stack = [(0, len(values), 0)]
    while stack:
        lo, hi, depth = stack.pop()
        if hi - lo == 1:
            patterns.append((values[lo], False, 1))
            continue
        depth = max(depth, len(os.path.commonprefix([values[lo], values[hi - 1]])))  # sorted: first and last tell
        prefix = values[lo][:depth]
        if depth and hi - lo <= per_group and _prefix_ok(prefix):
            patterns.append((prefix, True, hi - lo))
            continue
        i, children = lo, []
        if len(values[i]) == depth:  # the value that is the branch's prefix itself (distinct: at most one)
            children.append((i, i + 1, depth))
            i += 1
        while i < hi:
            branch = values[i][:depth + 1]
            past = branch[:-1] + chr(ord(branch[-1]) + 1) if ord(branch[-1]) < 0x10FFFF else None
            j = bisect.bisect_left(values, past, i, hi) if past else hi  # the first value past the branch
            children.append((i, j, depth + 1))
            i = j
        stack.extend(reversed(children))

    groups: list[tuple[list[str], list[str]]] = [([], [])]
    held = 0
    for text, is_prefix, count in patterns:
        exact, prefixes = groups[-1]
        if held and (held + count > per_group or len(exact) + len(prefixes) >= max_alternatives):
            groups.append(([], []))
            exact, prefixes, held = groups[-1][0], groups[-1][1], 0
        (prefixes if is_prefix else exact).append(text)
        held += count
    return [(tuple(e), tuple(p)) for e, p in groups]


@dataclass
class Points:
    """Exact samples of some series in one window: {prefix: {timestamp ms: value}}, plus each prefix's tags."""

    values: dict[str, dict[int, float]] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class Timings:
    """Where a verification's time goes (reported in --json, and by bench/verify.py)."""

    prometheus_s: float = 0.0
    influxdb_s: float = 0.0
    kafka_s: float = 0.0
    total_s: float = 0.0

    @property
    def compare_s(self) -> float:
        return max(0.0, self.total_s - self.prometheus_s - self.influxdb_s - self.kafka_s)

    def as_json(self) -> dict:
        return {"prometheus_s": round(self.prometheus_s, 3), "influxdb_s": round(self.influxdb_s, 3),
                "kafka_s": round(self.kafka_s, 3), "compare_s": round(self.compare_s, 3),
                "total_s": round(self.total_s, 3)}


class Expected:
    """Prometheus' side of a verification, for one query."""

    def __init__(self, extractor: PrometheusExtractor, query: QuerySettings, transform: TransformSettings,
                 timings: Timings | None = None, split_label: str = "instance", max_series: int | None = None):
        self.timings = timings or Timings()
        self.extractor = extractor
        self.query = query
        self.split_label = split_label  # a window Prometheus refuses as too large is read in groups by it
        self.max_series = max_series  # a raw window of more series is verified in groups (None: always whole)
        self.split_tag = tag_key_of_label(split_label, transform.include_labels, transform.exclude_labels)
        self.transformer = DataTransformer(transform, clock=lambda: float("inf"))  # history is never "future"
        self.metrics_seen: set[str] = set()  # metric tags of every series met so far (InfluxDB is asked for these)
        # range mode: the points of the current chunk, fetched once for screening and reused for comparison
        self._range_cache: tuple[Window, Points] | None = None

    # --- which series, under which name -------------------------------------------------------------------

    def identify(self, labels: dict[str, str]) -> tuple[str, dict[str, str]] | None:
        """The prefix a series is written under and its tags as InfluxDB stores them (after the representable
        rule, empty values left out), or None if its metric is not allowed in."""
        window = SeriesWindow(self.query.name, self.query.metric_type, labels, 0, 0, [])
        prefix, allowed = self.transformer.prefix_of(window)
        if not allowed:
            return None
        stored = stored_tags(self.transformer.tags(window))
        if "metric" in stored:
            self.metrics_seen.add(stored["metric"])
        return prefix, stored

    # --- groups of series ---------------------------------------------------------------------------------

    def groups(self, window: Window, series_hint: int | None) -> list[SeriesGroup | None]:
        """The window's series in groups of about `max_series` ([None]: the window whole), covering every series
        Prometheus has once. `series_hint`: how many series the previous window had (None: Prometheus counts this
        window's)."""
        if self.query.mode != "raw" or self.max_series is None or self.split_tag is None:
            return [None]  # a range query is an expression; a label InfluxDB does not keep cannot narrow its side
        t0 = time.perf_counter()
        try:
            series = self.extractor.count_series(self.query, window) if series_hint is None else series_hint
            if series <= self.max_series:
                return [None]
            values = ["", *self.extractor.label_values(self.query, window, self.split_label)]
        except PrometheusTooLarge:  # too large even to count: read whole, it is compared in pieces (read_window_split)
            return [None]
        finally:
            self.timings.prometheus_s += time.perf_counter() - t0
        return [SeriesGroup(self.split_label, self.split_tag, exact, tuple(dict.fromkeys(map(representable, exact))),
                            prefixes)
                for exact, prefixes in pattern_groups(values, series, self.max_series)]  # "" first, then sorted

    def outsider_groups(self, groups: list[SeriesGroup | None], stored_values: set[str]) -> list[SeriesGroup | None]:
        """Groups of the values InfluxDB holds for the split tag that no group above has (series Prometheus never
        had: all extra), so that every series of either side is in one group."""
        exact = {v for g in groups if g is not None for v in g.stored}
        prefixes = tuple(p for g in groups if g is not None for p in g.prefixes)
        only_stored = sorted(v for v in stored_values if v not in exact and not v.startswith(prefixes))
        return [SeriesGroup(self.split_label, g.tag, (), part) for g in groups[:1] if g is not None
                for part in groups_of(only_stored, len(only_stored), self.max_series or len(only_stored))]

    def _narrowed(self, group: SeriesGroup | None) -> QuerySettings | None:
        """The query narrowed to the group's series (None: Prometheus has none of them)."""
        if group is None:
            return self.query
        if not group.values and not group.prefixes:
            return None
        return self.query.model_copy(update={"promql": with_label_in(self.query.promql, group.label, group.values,
                                                                     group.prefixes)})

    # --- screening ----------------------------------------------------------------------------------------

    def figures(self, window: Window, group: SeriesGroup | None = None) -> dict[str, Figures] | None:
        """Count and sum per series of the window (of the group's series); None when it cannot be screened (then
        every series of it is compared sample by sample)."""
        if self.query.mode == "range":
            return self._figures_of(self.points(window))
        query = self._narrowed(group)
        if query is None:
            return {}
        try:
            return self._screen(window, query)
        except PrometheusTooLarge:  # Prometheus will not count the window at once: compare it exactly
            return None

    def _screen(self, w: Window, query: QuerySettings) -> dict[str, Figures] | None:
        """Count and sum per series of one raw window, from Prometheus' *_over_time (None: compare exactly)."""
        span = w.end_ms - w.start_ms - 1  # Prometheus 2.x ranges include both ends: (start, end] on the ms grid
        if span <= 0:  # a 1 ms window has no range selector ([0ms] is refused): its one instant is read exactly
            return None
        selector = f"{query.promql}[{span}ms]"
        # count_over_time and sum_over_time drop __name__; last_over_time keeps it: map the name back
        names: dict[tuple, str] = {}
        for key, _value in self._instant_labels(f"last_over_time({selector})", w.end_ms):
            labels = dict(key)
            rest = tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))
            if rest in names and names[rest] != labels.get("__name__", ""):
                return None  # two metric names with one label set: counts would collide, compare exactly
            names[rest] = labels.get("__name__", "")
        if not names:
            return None
        counts = self._instant(f"count_over_time({selector})", w.end_ms)
        sums = self._instant(f"sum_over_time({selector})", w.end_ms)
        figures: dict[str, Figures] = {}
        for key, n in counts.items():
            labels = dict(key)
            if names.get(key):
                labels["__name__"] = names[key]
            named = self.identify(labels)
            if named is not None:
                figures[named[0]] = Figures(int(float(n)), float(sums.get(key, "NaN")))
        return figures

    def _instant_labels(self, promql: str, at_ms: int) -> list[tuple[tuple, str]]:
        t0 = time.perf_counter()
        series = self.extractor.instant(promql, at_ms, self.query.name)
        self.timings.prometheus_s += time.perf_counter() - t0
        return [(tuple(sorted(s.labels.items())), s.samples[0][1]) for s in series]

    def _instant(self, promql: str, at_ms: int) -> dict[tuple, str]:
        return dict(self._instant_labels(promql, at_ms))

    @staticmethod
    def _figures_of(points: Points) -> dict[str, Figures]:
        return {p: Figures(len(v), math.fsum(v.values())) for p, v in points.values.items()}

    # --- exact samples ------------------------------------------------------------------------------------

    def points(self, window: Window, prefixes: set[str] | None = None, group: SeriesGroup | None = None) -> Points:
        """The exact points InfluxDB must hold for `window`, after the consumer's rules (optionally some series, of
        one group)."""
        if self.query.mode == "range" and self._range_cache and self._range_cache[0] == window:
            points = self._range_cache[1]
        else:
            points = Points()
            query = self._narrowed(group)
            if query is None:
                return points
            for part in pending_windows(window.start_ms, window.end_ms,
                                        chunk_ms(self.query.mode, self.query.step_ms, window.end_ms - window.start_ms)):
                t0 = time.perf_counter()
                series = self.extractor.read_window_split(query, part, self.split_label)
                self.timings.prometheus_s += time.perf_counter() - t0
                self._add(points, series)
            if self.query.mode == "range":
                self._range_cache = (window, points)
        if prefixes is None:
            return points
        return Points({p: v for p, v in points.values.items() if p in prefixes},
                      {p: t for p, t in points.tags.items() if p in prefixes})

    def _add(self, points: Points, series: Iterable[Series]) -> None:
        for s in series:
            named = self.identify(s.labels)
            if named is None:
                continue
            prefix, tags = named
            result = self.transformer.transform([SeriesWindow(self.query.name, self.query.metric_type, s.labels,
                                                              0, 0, s.samples)])
            values = points.values.setdefault(prefix, {})
            points.tags[prefix] = tags
            for line in result.lines:
                _, field_part, ts = line.rsplit(" ", 2)
                values[int(ts)] = float(field_part.split("=", 1)[1])
