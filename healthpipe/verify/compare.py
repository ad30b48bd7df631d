"""The comparison: per query, per series, what InfluxDB is missing, has extra, or holds with another value.

Streaming, window by window (hours on the epoch grid, clipped to the range): screen with count + sum per
series, then fetch and compare sample by sample only the series and windows that differ. Memory is bounded by
one window's differing samples plus the differences found, whatever the range.

Missing timestamps are folded into ranges `[first_ms, last_ms, count]` of consecutive expected samples.
Screening cannot see a value changed by less than ~1e-12 relative within a window whose count matches;
`full=True` (`--full`) compares every sample instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from healthpipe.common.config import QuerySettings
from healthpipe.common.flux import metric_names
from healthpipe.producer.windows import Window
from healthpipe.verify.expected import Expected, Points, SeriesGroup
from healthpipe.verify.stored import Stored

HOUR_MS = 3_600_000


@dataclass
class SeriesDiff:
    labels: dict[str, str]
    missing: int = 0
    missing_ranges: list[list[int]] = field(default_factory=list)
    extra: int = 0
    mismatched: int = 0
    dead_lettered: int = 0  # absent from InfluxDB because it refused them: on the dead-letter topic
    _tail_missing: bool = False  # the last expected sample seen so far was missing: a range may continue

    def as_json(self) -> dict:
        return {"labels": self.labels, "missing": self.missing, "missing_ranges": self.missing_ranges,
                "extra": self.extra, "mismatched": self.mismatched, "dead_lettered": self.dead_lettered}


@dataclass
class QueryResult:
    name: str
    expected: int = 0
    present: int = 0
    missing: int = 0
    extra: int = 0
    mismatched: int = 0
    dead_lettered: int = 0
    series: dict[str, SeriesDiff] = field(default_factory=dict)  # only series with a difference

    def diff(self, prefix: str, labels: dict[str, str]) -> SeriesDiff:
        if prefix not in self.series:
            self.series[prefix] = SeriesDiff(labels)
        return self.series[prefix]

    def as_json(self) -> dict:
        worst = sorted(self.series.values(), key=lambda s: -(s.missing + s.extra + s.mismatched + s.dead_lettered))
        return {"name": self.name, "expected": self.expected, "present": self.present, "missing": self.missing,
                "extra": self.extra, "mismatched": self.mismatched, "dead_lettered": self.dead_lettered,
                "series": [s.as_json() for s in worst]}


def windows_of(start_ms: int, end_ms: int, size_ms: int = HOUR_MS) -> list[Window]:
    """(start, end] cut at multiples of `size_ms` since the epoch."""
    cuts = [start_ms, *range((start_ms // size_ms + 1) * size_ms, end_ms, size_ms), end_ms]
    return [Window(a, b) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def verify_query(query: QuerySettings, expected: Expected, stored: Stored, start_ms: int, end_ms: int,
                 full: bool = False, progress: Callable[[str, int, int], None] | None = None) -> QueryResult:
    result = QueryResult(query.name)
    names = set(metric_names(query))
    windows = windows_of(start_ms, end_ms)
    series_seen: int | None = None  # how many series the last window had: whether the next is read in groups
    for i, window in enumerate(windows):
        counted: int | None = 0
        groups = expected.groups(window, series_seen)
        values_seen: set[str] = set()  # the split tag's values InfluxDB's side of the groups held (grouped only)
        for group in groups:
            n = _verify_piece(result, query, expected, stored, window, group, names, full, values_seen)
            counted = None if counted is None or n is None else counted + n
        if groups[0] is not None:  # InfluxDB may hold values no group had: listed only when its count says so
            tag, wanted = groups[0].tag, names | expected.metrics_seen
            if stored.count_tag_values(query, window, wanted, tag) > len(values_seen):
                for group in expected.outsider_groups(groups, stored.tag_values(query, window, wanted, tag)):
                    _verify_piece(result, query, expected, stored, window, group, names, full, values_seen)
        series_seen = counted
        if progress:
            progress(query.name, i + 1, len(windows))
    return result


def _verify_piece(result: QueryResult, query: QuerySettings, expected: Expected, stored: Stored, window: Window,
                  group: SeriesGroup | None, names: set[str], full: bool, values_seen: set[str]) -> int | None:
    """One window (or one group of its series) into `result`; how many series Prometheus has in it (None: not
    counted, when compared exactly)."""
    want = None if full else expected.figures(window, group)
    names |= expected.metrics_seen
    if want is None:  # --full, or a window Prometheus cannot screen
        truth = expected.points(window, None, group)
        names |= expected.metrics_seen
        actual = stored.points(query, window, names, None, group)
        if group is not None:
            values_seen.update(tags[group.tag] for tags in actual.tags.values() if tags.get(group.tag))
        _compare(result, truth, actual, set(truth.values) | set(actual.values))
        return None
    have = stored.figures(query, window, names, group, values_seen)
    result.expected += sum(f.count for f in want.values())
    result.present += sum(f.count for f in have.values())
    differing = {p for p in want.keys() | have.keys()
                 if p not in want or p not in have or not want[p].matches(have[p])}
    for p in want.keys() - differing:
        if p in result.series:
            result.series[p]._tail_missing = False
    if differing:
        truth = expected.points(window, differing, group)
        known = {p: truth.tags[p] for p in differing if p in truth.tags}
        actual = stored.points(query, window, names, known if len(known) == len(differing) else None, group)
        # the screening counted the differing series too: count them exactly instead
        result.expected -= sum(want[p].count for p in differing if p in want)
        result.present -= sum(have[p].count for p in differing if p in have)
        _compare(result, truth, actual, differing)
    return len(want)


def _compare(result: QueryResult, truth: Points, actual: Points, prefixes: set[str]) -> None:
    """Compare the series `prefixes` sample by sample (the others in `truth`/`actual` are not looked at)."""
    for prefix in sorted(prefixes):
        want = truth.values.get(prefix, {})
        have = actual.values.get(prefix, {})
        result.expected += len(want)
        result.present += len(have)
        labels = truth.tags.get(prefix) or actual.tags.get(prefix) or {}
        missing = want.keys() - have.keys()
        extra = have.keys() - want.keys()
        mismatched = [t for t in want.keys() & have.keys() if want[t] != have[t]]
        if not (missing or extra or mismatched):
            if prefix in result.series:
                result.series[prefix]._tail_missing = False
            continue
        diff = result.diff(prefix, labels)
        diff.extra += len(extra)
        diff.mismatched += len(mismatched)
        result.extra += len(extra)
        result.mismatched += len(mismatched)
        if missing:
            _fold(diff, sorted(want), missing)
            diff.missing += len(missing)
            result.missing += len(missing)
        else:
            diff._tail_missing = False


def _fold(diff: SeriesDiff, expected_ts: list[int], missing: set[int]) -> None:
    """Append this window's missing timestamps as ranges of consecutive expected samples, continuing the
    previous window's last range when both its last and this window's first expected sample are missing."""
    ranges = diff.missing_ranges
    continuing = diff._tail_missing
    for ts in expected_ts:
        if ts in missing:
            if continuing and ranges:
                ranges[-1][1] = ts
                ranges[-1][2] += 1
            else:
                ranges.append([ts, ts, 1])
            continuing = True
        else:
            continuing = False
    diff._tail_missing = continuing
