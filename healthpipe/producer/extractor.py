"""PrometheusExtractor (the plan's SimplePrometheusExtractor): reads samples over Prometheus' HTTP API.

Two modes per query:
- raw: `selector[window]` evaluated at the window's end returns the exact stored samples with their
  original timestamps. Prometheus 2.x includes both ends of a range selector and 3.x only the right one,
  so we keep (start, end] ourselves and the result is the same on both.
- range: `query_range` on a step grid; windows are aligned to the step so timestamps are deterministic.
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import msgspec
import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from healthpipe.common import promql
from healthpipe.common.config import QuerySettings, default_queries
from healthpipe.common.errors import PrometheusRejected, PrometheusTooLarge, PrometheusUnavailable
from healthpipe.common.times import parse_duration
from healthpipe.producer.windows import RAW_MIN_CHUNK_MS, Window, range_points, split_window

# What to do with each errorType of Prometheus' HTTP API (web/api/v1/api.go). Only a query Prometheus cannot
# parse or evaluate as written is the user's to fix; everything else is worth another try later.
REJECTED_ERROR_TYPES = {"bad_data", "not_acceptable", "not_found"}  # others: timeout, canceled, execution,
#                                                                     unavailable, internal -> retry later

PrometheusError = PrometheusRejected | PrometheusUnavailable  # PrometheusTooLarge is a PrometheusUnavailable


# Prometheus' words for an answer too large to give (promql/engine.go, web/api/v1/api.go): a smaller read succeeds
TOO_LARGE_ERRORS = ("would load too many samples", "exceeded maximum resolution")


def api_error(query: str, error_type: str | None, error: str | None) -> PrometheusError:
    """The exception for an API error answer, by its errorType (and, for a size limit, its text)."""
    detail = f"{error_type}: {error}"
    if any(words in (error or "") for words in TOO_LARGE_ERRORS):
        return PrometheusTooLarge(query, detail)
    if error_type in REJECTED_ERROR_TYPES:
        return PrometheusRejected(query, detail)
    return PrometheusUnavailable(query, detail)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Series:
    labels: dict[str, str]
    samples: list[tuple[int, str]] = field(default_factory=list)  # (timestamp ms, value as given)


def _within(series: list[Series], window: Window) -> list[Series]:
    """Each series' samples in (start, end] (they come sorted by time), series left empty dropped."""
    for s in series:
        lo = bisect_right(s.samples, window.start_ms, key=_timestamp)
        hi = bisect_right(s.samples, window.end_ms, key=_timestamp)
        if lo or hi < len(s.samples):
            s.samples = s.samples[lo:hi]
    return [s for s in series if s.samples]


def _timestamp(sample: tuple[int, str]) -> int:
    return sample[0]


class _MatrixSeries(msgspec.Struct):
    metric: dict[str, str]
    values: list[tuple[float, str]]


class _MatrixData(msgspec.Struct):
    resultType: Literal["matrix"]  # noqa: N815 (Prometheus' name)
    result: list[_MatrixSeries]


class _MatrixAnswer(msgspec.Struct):
    """The usual answer, typed: decoding it checks it and skips the cyclic GC churn of generic JSON lists
    (measured: 0.17 vs 0.73 CPU-s per million samples for orjson.loads)."""

    status: str
    data: _MatrixData
    warnings: list[str] = []


_MATRIX = msgspec.json.Decoder(_MatrixAnswer)


def _to_ms(ts: float) -> int:
    return round(float(ts) * 1000)


def _to_seconds(t: datetime | float | int) -> float:
    return t.timestamp() if isinstance(t, datetime) else float(t)


class PrometheusExtractor:
    """HTTP client for Prometheus with timeouts and retries (backoff + jitter on connection errors, 5xx, 429)."""

    def __init__(self, prometheus_url: str, timeout: float = 10.0, max_retries: int = 4,
                 backoff_factor: float = 0.5, session: requests.Session | None = None,
                 on_request: object = None, accept_warnings: bool = False):
        self.prometheus_url = prometheus_url.rstrip("/")
        # An answer with `warnings` may be partial (a failed remote-read or a storage error): by default it is
        # refused like an unavailable Prometheus, so no watermark moves past data that may be missing.
        self.accept_warnings = accept_warnings
        self.timeout = timeout
        self.session = session or requests.Session()
        retry = Retry(total=max_retries, connect=max_retries, read=max_retries, status=max_retries,
                      backoff_factor=backoff_factor, backoff_jitter=backoff_factor,
                      status_forcelist=(429, 500, 502, 503, 504), allowed_methods=("GET", "POST"),
                      respect_retry_after_header=True, raise_on_status=True)
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))
        # Called with (endpoint, seconds, ok) after every request: the service turns it into metrics.
        self.on_request = on_request

    # --- the plan's API ----------------------------------------------------------------------------

    def extract_metrics(self, query: str, start_time: datetime | float, end_time: datetime | float,
                        step: str = "15s") -> list[Series]:
        """query_range over [start_time, end_time] at `step`: one Series per result series."""
        return self._get("/api/v1/query_range", query, {
            "query": query, "start": f"{_to_seconds(start_time):.3f}", "end": f"{_to_seconds(end_time):.3f}",
            "step": f"{parse_duration(step):g}"})

    def get_basic_metrics(self, queries: Iterable[QuerySettings] | None = None,
                          lookback: str = "5m") -> dict[str, list[Series] | PrometheusError]:
        """The core queries over the last `lookback`; a failing query is reported, the others carry on."""
        now = time.time()
        results: dict[str, list[Series] | PrometheusError] = {}
        for q in queries or default_queries():
            try:
                results[q.name] = self.extract_metrics(q.promql, now - parse_duration(lookback), now, str(q.step))
            except (PrometheusRejected, PrometheusUnavailable) as exc:
                log.warning("query_failed query=%s error=%s", q.name, exc)
                results[q.name] = exc
        return results

    def _parse_response(self, payload: dict, query: str) -> list[Series]:
        """Series from a Prometheus API answer (matrix, vector or scalar), values kept as strings."""
        if payload.get("status") != "success":
            raise api_error(query, payload.get("errorType"), payload.get("error", str(payload)))
        if payload.get("warnings") and not self.accept_warnings:
            raise PrometheusUnavailable(query, f"answer has warnings (possibly partial data, not published; "
                                               f"extract.accept_warnings allows it): {payload['warnings'][:3]}")
        data = payload.get("data") or {}
        kind, result = data.get("resultType"), data.get("result") or []
        if kind == "matrix":
            return [Series(dict(r["metric"]), [(_to_ms(ts), v) for ts, v in r["values"]]) for r in result]
        if kind == "vector":
            return [Series(dict(r["metric"]), [(_to_ms(r["value"][0]), r["value"][1])]) for r in result]
        if kind == "scalar":
            return [Series({}, [(_to_ms(result[0]), result[1])])]
        raise PrometheusUnavailable(query, f"unexpected resultType {kind!r}")

    # --- what the producer uses ----------------------------------------------------------------------

    def read_window(self, q: QuerySettings, window: Window) -> list[Series]:
        """All samples of `q` in the window (start, end], by the query's mode."""
        if q.mode == "raw":
            return self._read_raw(q, window)
        points = range_points(window, q.step_ms)
        if points is None:
            return []
        series = self.extract_metrics(q.promql, points[0] / 1000, points[1] / 1000, str(q.step))
        return _within(series, window)  # query_range only returns grid points in [first, last]: explicit anyway

    def _read_raw(self, q: QuerySettings, window: Window, selector: str | None = None) -> list[Series]:
        span = window.end_ms - window.start_ms
        series = self._get("/api/v1/query", q.name, {"query": f"{selector or q.promql}[{span}ms]",
                                                     "time": f"{window.end_ms / 1000:.3f}"})
        return _within(series, window)

    def read_window_split(self, q: QuerySettings, window: Window, label: str) -> list[Series]:
        """read_window, however large: while Prometheus refuses a read as too large, it is halved in time (down to
        1 s raw, one step in range mode), then read in groups of series by `label` (raw). For readers that take
        the whole window at once (verify); the producer splits the same way with a transaction a piece
        (ProducerService.publish_splitting)."""
        try:
            return self.read_window(q, window)
        except PrometheusTooLarge:
            halves = split_window(window, q.grid_ms, q.step_ms if q.mode == "range" else RAW_MIN_CHUNK_MS)
            if halves is None:
                return self.read_window_by_series(q, window, label)
        return self.read_window_split(q, halves[0], label) + self.read_window_split(q, halves[1], label)

    def read_window_by_series(self, q: QuerySettings, window: Window, label: str) -> list[Series]:
        """A raw window too large for one answer, read in two groups of series (read_window_in_groups): what
        `read_window` would have returned."""
        return [s for group in self.read_window_in_groups(q, window, label, 2) for s in group]

    def read_window_in_groups(self, q: QuerySettings, window: Window, label: str,
                              groups: int) -> Iterator[list[Series]]:
        """A raw window read as about `groups` groups of series, one answer at a time (the caller publishes a
        group before the next is read: memory holds one group, not the window): the series whose `label` is in one
        part of the values Prometheus lists for the window (the series without it join the first group), a group
        halved while Prometheus still refuses it. The groups are disjoint and cover every series. PrometheusTooLarge
        when one value's series alone are too many."""
        if q.mode != "raw":
            raise PrometheusTooLarge(q.name, "a range-mode query cannot be split by series (its PromQL is an "
                                             "expression, not a selector): lower its step or its series count")
        values = ["", *self.label_values(q, window, label)]
        size = -(-len(values) // max(1, groups))
        for first in range(0, len(values), size):
            yield self._read_group(q, window, label, values[first:first + size])

    def count_series(self, q: QuerySettings, window: Window) -> int:
        """How many series of raw query `q` have samples in `window`: its size before it is read. Prometheus reads
        the samples to answer, a series at a time, and sends one number (an instant `count(q)` would miss a
        backfill window's series: its lookback ends 5 minutes before the window's end)."""
        span = window.end_ms - window.start_ms
        answer = self._get("/api/v1/query", q.name, {"query": f"count(last_over_time({q.promql}[{span}ms]))",
                                                     "time": f"{window.end_ms / 1000:.3f}"})
        return int(float(answer[0].samples[0][1])) if answer and answer[0].samples else 0

    def _read_group(self, q: QuerySettings, window: Window, label: str, values: list[str]) -> list[Series]:
        try:
            return self._read_raw(q, window, promql.with_label_in(q.promql, label, values))
        except PrometheusTooLarge:
            if len(values) < 2:
                raise
            half = len(values) // 2
            return self._read_group(q, window, label, values[:half]) + \
                self._read_group(q, window, label, values[half:])

    def label_values(self, q: QuerySettings, window: Window, label: str) -> list[str]:
        """The values of `label` among the query's series in the window (Prometheus' index: no samples read)."""
        if not promql.LABEL_NAME.fullmatch(label):
            raise ValueError(f"label name {label!r} is not [a-zA-Z_][a-zA-Z0-9_]*")
        try:
            resp = self.session.get(f"{self.prometheus_url}/api/v1/label/{label}/values", timeout=self.timeout,
                                    params={"match[]": q.promql, "start": f"{window.start_ms / 1000:.3f}",
                                            "end": f"{window.end_ms / 1000:.3f}"})
            payload = resp.json()
        except (requests.RequestException, ValueError) as exc:
            raise PrometheusUnavailable(q.name, f"label values of {label}: {type(exc).__name__}: {exc}") from None
        if payload.get("status") != "success":
            raise api_error(q.name, payload.get("errorType"), payload.get("error"))
        return sorted(v for v in payload.get("data") or [] if v)

    def check_query(self, q: QuerySettings) -> None:
        """Evaluate `q` once; PrometheusRejected (Fatal) naming it if Prometheus rejects the PromQL."""
        # raw mode appends a range to the PromQL, so it must be a plain selector; this finds out.
        promql = f"{q.promql}[1m]" if q.mode == "raw" else q.promql
        self._get("/api/v1/query", q.name, {"query": promql})

    def instant(self, promql: str, at_ms: int, name: str) -> list[Series]:
        """An instant query evaluated at `at_ms` (errors name the query `name`)."""
        return self._get("/api/v1/query", name, {"query": promql, "time": f"{at_ms / 1000:.3f}"})

    def now_ms(self) -> int:
        """Prometheus' own clock (the evaluation time of an instant query without `time`), in ms."""
        series = self._get("/api/v1/query", "time()", {"query": "time()"})
        return series[0].samples[0][0]

    def ready(self) -> bool:
        try:
            return self.session.get(f"{self.prometheus_url}/-/ready", timeout=self.timeout).ok
        except requests.RequestException:
            return False

    def _answer(self, content: bytes, query: str) -> list[Series]:
        """The series of an answer body. The usual answer (a matrix, no warnings) is decoded and checked by
        msgspec in one pass into typed structs; anything else goes through `_parse_response`."""
        try:
            answer = _MATRIX.decode(content)
        except (msgspec.ValidationError, msgspec.DecodeError):
            answer = None
        if answer is None or answer.status != "success" or answer.warnings:
            try:
                payload = orjson.loads(content)
            except orjson.JSONDecodeError as exc:
                raise PrometheusUnavailable(query, f"answer is not JSON: {exc}") from None
            return self._parse_response(payload, query)
        return [Series(r.metric, [(round(ts * 1000), v) for ts, v in r.values]) for r in answer.data.result]

    def _get(self, path: str, query: str, params: dict) -> list[Series]:
        t0 = time.perf_counter()
        ok = False
        try:
            # POST with a form body: long PromQL does not hit URL length limits.
            resp = self.session.post(f"{self.prometheus_url}{path}", data=params, timeout=self.timeout)
            if resp.status_code in (400, 422):  # bad query: Prometheus explains in the JSON body
                body = resp.json()
                raise api_error(query, body.get("errorType"), body.get("error"))
            resp.raise_for_status()
            series = self._answer(resp.content, query)
            ok = True
            return series
        except requests.exceptions.RetryError as exc:
            raise PrometheusUnavailable(query, f"gave up after retries: {exc.args[0].reason if exc.args else exc}") \
                from None
        except requests.RequestException as exc:
            raise PrometheusUnavailable(query, f"{type(exc).__name__}: {exc}") from None
        except ValueError as exc:
            raise PrometheusUnavailable(query, f"answer is not JSON: {exc}") from None
        finally:
            if callable(self.on_request):
                self.on_request(path, time.perf_counter() - t0, ok)
