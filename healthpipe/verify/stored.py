"""What InfluxDB holds for a query: per-window count and sum per series (screening), or the exact points.

A query's series in InfluxDB are the points of measurement `health_metrics`, field `value`, with the query's
`metric_type` and one of its metric names (the selector's metric in raw mode, the query name for computed
series, and every name Prometheus returned). Each series is named by the line-protocol prefix rebuilt from
its tags, the same name the consumer wrote it under.

Flux `range(start, stop)` is [start, stop); windows here are (start, end] on the millisecond grid, so every
query asks for [start + 1 ms, end + 1 ms).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from influxdb_client import InfluxDBClient
from influxdb_client.rest import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from healthpipe.common.config import InfluxSettings, QuerySettings
from healthpipe.common.errors import Fatal, SinkUnavailable
from healthpipe.common.flux import flux_regex_in, flux_string
from healthpipe.common.times import iso
from healthpipe.producer.windows import Window
from healthpipe.schema import FIELD, MEASUREMENT, series_prefix
from healthpipe.verify.expected import Figures, Points, SeriesGroup, Timings

_NOT_TAGS = {"result", "table", "_start", "_stop", "_time", "_value", "_field", "_measurement"}


class Stored:
    """InfluxDB's side of a verification."""

    def __init__(self, settings: InfluxSettings, timings: Timings | None = None):
        self.settings = settings
        self.timings = timings or Timings()
        self.client = InfluxDBClient(**{**settings.client_kwargs(),
                                        "timeout": int(max(settings.timeout_seconds, 60) * 1000)})
        self.api = self.client.query_api()

    def close(self) -> None:
        self.client.close()

    def _where(self, query: QuerySettings, names: Iterable[str], series: dict[str, dict[str, str]] | None,
               group: SeriesGroup | None = None) -> str:
        metrics = " or ".join(f"r.metric == {flux_string(n)}" for n in sorted(names))
        where = (f'r._measurement == "{MEASUREMENT}" and r._field == "{FIELD}" and '
                 f"r.metric_type == {flux_string(query.metric_type)} and ({metrics})")
        if group is not None:  # a regex, not contains(): the storage applies it (contains() took 100-400x longer)
            where += f" and r[{flux_string(group.tag)}] =~ {flux_regex_in(group.stored, group.prefixes)}"
        if series:  # only these series: match every tag of each
            each = [" and ".join(f"r[{flux_string(k)}] == {flux_string(v)}" for k, v in sorted(tags.items()))
                    for tags in series.values()]
            where += " and (" + " or ".join(f"({e})" for e in each) + ")"
        return where

    def _base(self, window: Window, where: str) -> str:
        return (f'from(bucket: {flux_string(self.settings.bucket)}) '
                f"|> range(start: {iso(window.start_ms + 1)}, stop: {iso(window.end_ms + 1)}) "
                f"|> filter(fn: (r) => {where})")

    def _records(self, flux: str) -> Iterator:
        """The answer's records, streamed (one window's worth at most in memory); the time spent waiting for
        and parsing them counts as InfluxDB's."""
        t0 = time.perf_counter()
        try:
            stream = iter(self.api.query_stream(flux, org=self.settings.org))
            while True:
                try:
                    record = next(stream)
                except StopIteration:
                    return
                self.timings.influxdb_s += time.perf_counter() - t0
                yield record
                t0 = time.perf_counter()
        except ApiException as exc:
            if exc.status in (401, 403, 404):
                raise Fatal(f"InfluxDB at {self.settings.url} refused the query (HTTP {exc.status}): check "
                            f"load.influxdb.token / org / bucket {self.settings.bucket!r}") from None
            raise SinkUnavailable(f"InfluxDB at {self.settings.url} cannot be read: HTTP {exc.status}") from None
        except (Urllib3Error, OSError) as exc:
            raise SinkUnavailable(f"InfluxDB at {self.settings.url} cannot be read: {exc}") from None
        finally:
            self.timings.influxdb_s += time.perf_counter() - t0

    @staticmethod
    def _tags(values: dict) -> dict[str, str]:
        return {k: str(v) for k, v in values.items() if k not in _NOT_TAGS and v is not None}

    def figures(self, query: QuerySettings, window: Window, names: Iterable[str],
                group: SeriesGroup | None = None, values_seen: set[str] | None = None) -> dict[str, Figures]:
        """Count and sum per series in one window (of the group's series), computed by InfluxDB; the group's tag
        values met are added to `values_seen`."""
        base = self._base(window, self._where(query, names, None, group))
        flux = f'{base} |> count() |> yield(name: "count")\n{base} |> sum() |> yield(name: "sum")'
        counts: dict[str, int] = {}
        sums: dict[str, float] = {}
        for rec in self._records(flux):
            tags = self._tags(rec.values)
            if group is not None and values_seen is not None and tags.get(group.tag):
                values_seen.add(tags[group.tag])  # as InfluxDB counts them: a series without the tag has no value
            prefix = series_prefix(tags.items())
            if rec.values["result"] == "count":
                counts[prefix] = int(rec.get_value())
            else:
                sums[prefix] = float(rec.get_value())
        return {p: Figures(n, sums.get(p, float("nan"))) for p, n in counts.items()}

    def tag_values(self, query: QuerySettings, window: Window, names: Iterable[str], tag: str) -> set[str]:
        """The values tag `tag` has among the query's series in the window (InfluxDB's index: a series with points
        in the window's shards, not only in the window, may add its value)."""
        return {str(rec.get_value()) for rec in self._records(self._tag_values(query, window, names, tag))
                if rec.get_value()}  # an empty value (null in the CSV) stands for the series without the tag

    def count_tag_values(self, query: QuerySettings, window: Window, names: Iterable[str], tag: str) -> int:
        """How many values tag_values would list, counted by InfluxDB (one number travels; the empty value of the
        series without the tag left out, as tag_values leaves it)."""
        flux = self._tag_values(query, window, names, tag) + ' |> filter(fn: (r) => r._value != "") |> count()'
        return sum(int(rec.get_value()) for rec in self._records(flux))

    def _tag_values(self, query: QuerySettings, window: Window, names: Iterable[str], tag: str) -> str:
        return (f'import "influxdata/influxdb/schema"\n'
                f"schema.tagValues(bucket: {flux_string(self.settings.bucket)}, tag: {flux_string(tag)}, "
                f"predicate: (r) => {self._where(query, names, None)}, "
                f"start: {iso(window.start_ms + 1)}, stop: {iso(window.end_ms + 1)})")

    def points(self, query: QuerySettings, window: Window, names: Iterable[str],
               series: dict[str, dict[str, str]] | None = None, group: SeriesGroup | None = None) -> Points:
        """The exact points in one window (of the named series only, when given; of the group's series)."""
        if series is not None and len(series) > 200:
            series = None  # a filter that long costs more than reading the window whole
        points = Points()
        for rec in self._records(self._base(window, self._where(query, names, series, group))):
            tags = self._tags(rec.values)
            prefix = series_prefix(tags.items())
            points.values.setdefault(prefix, {})[round(rec.get_time().timestamp() * 1000)] = float(rec.get_value())
            points.tags[prefix] = tags
        return points
