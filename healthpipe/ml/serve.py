"""`healthpipe features serve`: the online features over HTTP (port features.port, default 8010).

    GET /features?query=request_rate&match[method]=GET&window=5m[&at=T]
      → {"at": ms, "window": "5m", "series": [{"series_id", "query", "metric", "metric_type", "labels": {...},
                                                "features": {"last", "mean", "min", "max", "stddev", "slope",
                                                             "count", "staleness_s"}}],
         "freshness": {"source": "stream" | "influxdb", "offsets": {"<partition>": next offset} | null,
                       "staleness_s": s | null}}
    POST /features  {"requests": [{"query": "request_rate", "match": {"method": "GET"}, "window": "5m",
                                   "at": T}, ...]}   (query, match, window, at: each optional, as in GET)
      → {"results": [one GET answer per request, in order]}: what a model server sends, answered in one pass
    GET /metrics   request latency (healthpipe_features_request_seconds), counts, the store's size and freshness
    GET /healthz; GET /readyz (503 while the stream store is behind the topic by over features.max_staleness_seconds)

With features.token set, /features and /metrics need `Authorization: Bearer <token>` (else 401); with
features.tls_cert_file/tls_key_file, the server speaks https only. Label names must be Prometheus label names and
the query a configured one (else 400); label values are data, quoted into Flux by flux_string.

Where the answers come from: with `features.stream` (the default), a window store fed by the topic
(stream_store.py, stream_feed.py) answers every request whose window it holds, from memory, as fresh as the
topic; `freshness.offsets` says up to where (Kafka's committed-offset convention: every message before it is in
the answer) and `staleness_s` how long ago the store last had all the topic had. Other requests (a window reaching
back past `features.stream_span`, or while the store fills) read InfluxDB: `latest_features`, through a
WindowCache that keeps each selector's recent samples (window_cache.py). Both compute the one feature function the
training export uses (`healthpipe.ml.features`): served and trained values agree exactly
(tests/integration/test_ml.py).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import msgspec
import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from healthpipe.common import allocator
from healthpipe.common.bounded import BoundedCache, CacheCollector
from healthpipe.common.config import HealthpipeConfig
from healthpipe.common.errors import ConfigError, HealthpipeError, Retryable
from healthpipe.common.http_server import (
    BackgroundHTTPServer,
    BodyTooLarge,
    ClientTimeout,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    respond,
)
from healthpipe.common.times import parse_duration_arg, parse_time
from healthpipe.ml import features as feature_fn
from healthpipe.ml.stream_feed import StreamFeed
from healthpipe.ml.stream_store import StreamStore, as_arrays

if TYPE_CHECKING:
    from healthpipe.ml.window_cache import WindowCache

log = logging.getLogger(__name__)


LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _json_number(x: float) -> float | None:
    return None if isinstance(x, float) and math.isnan(x) else x


@dataclass(frozen=True)
class FeatureRequest:
    query: str | None  # None: every configured query
    labels: dict[str, str]
    window: str
    window_ms: int
    at_ms: int


def parse_request(cfg: HealthpipeConfig, query: str | None, labels: dict[str, str], window: str = "5m",
                  at: str | None = None) -> FeatureRequest:
    """A checked request; ConfigError naming what is wrong with it."""
    bad = [name for name in labels if not LABEL_NAME.fullmatch(name) or name == "query"]
    if bad:
        raise ConfigError(f"match[{bad[0][:100]!r}]: not a label name (letters, digits and _, not first a digit)")
    if not all(isinstance(v, str) for v in labels.values()):
        raise ConfigError("match: label values are strings")
    if query is not None:
        cfg.select_queries([query])  # a ConfigError naming it when no such query is configured
    window_s = parse_duration_arg(window, "window")
    if window_s > cfg.features.max_window.seconds:
        raise ConfigError(f"window {window!r} is longer than features.max_window ({cfg.features.max_window})")
    at_ms = parse_time(at) if at is not None else int(time.time() * 1000)  # a ConfigError naming a bad one
    return FeatureRequest(query, labels, window, int(window_s * 1000), at_ms)


class LazyWindowCache:
    """The WindowCache for the requests the stream store does not cover, made on the first one: it and the reader
    behind it use pandas and pyarrow, which a server whose store answers everything never imports (~80 MB of its
    resident memory, B8). Its bounded map of selectors exists from the start, for /metrics."""

    def __init__(self, cfg: HealthpipeConfig, on_read: Callable[[str], None] | None = None):
        self.cfg = cfg
        self.on_read = on_read
        self.entries: BoundedCache = BoundedCache("feature_windows", cfg.features.window_cache_selectors)
        self._cache: WindowCache | None = None
        self._lock = threading.Lock()

    def get(self) -> WindowCache:
        with self._lock:
            if self._cache is None:
                from healthpipe.ml.window_cache import WindowCache

                self._cache = WindowCache(self.cfg, on_read=self.on_read, entries=self.entries)
            return self._cache


def parse_params(cfg: HealthpipeConfig, params: dict[str, list[str]]) -> FeatureRequest:
    """GET /features' query string as a checked request; ConfigError naming what is wrong."""
    labels = {k[len("match["):-1]: v[0] for k, v in params.items() if k.startswith("match[") and k.endswith("]")}
    at = params.get("at", [None])[0]
    return parse_request(cfg, params["query"][0] if "query" in params else None, labels,
                         params.get("window", ["5m"])[0], at)


def answer(cfg: HealthpipeConfig, params: dict[str, list[str]], cache: LazyWindowCache | None = None,
           feed: StreamFeed | None = None) -> dict:
    """The GET /features answer for the query string `params`; ConfigError for a bad request."""
    return answer_many(cfg, [parse_params(cfg, params)], cache, feed)[0]


def _stream_answers(cfg: HealthpipeConfig, requests: list[FeatureRequest],
                    feed: StreamFeed) -> list[dict | None]:
    """Per request, its answer from the stream store, or None where the store does not hold the whole window."""
    # read before the store: the feed publishes offsets after applying their messages, so the answer holds at
    # least everything before them
    offsets = {str(p): o for p, o in sorted(feed.offsets.items())}
    freshness: dict[str, object] = {"source": "stream", "offsets": offsets, "staleness_s": feed.staleness_s()}
    return [None if series is None else
            {"at": request.at_ms if series else None, "window": request.window, "series": series,
             "freshness": freshness}
            for request, series in zip(requests, stream_features(cfg, feed.store, requests), strict=True)]


def answer_from_stream(cfg: HealthpipeConfig, requests: list[FeatureRequest],
                       feed: StreamFeed | None) -> list[dict] | None:
    """The answers if the stream store covers every request (memory only: no I/O, safe on the event loop),
    else None."""
    if feed is None:
        return None
    answers = _stream_answers(cfg, requests, feed)
    return None if any(a is None for a in answers) else answers  # type: ignore[return-value]


def answer_many(cfg: HealthpipeConfig, requests: list[FeatureRequest], cache: LazyWindowCache | None = None,
                feed: StreamFeed | None = None) -> list[dict]:
    """Answers in the order asked. Requests the stream store covers are computed together, in one call of the
    feature function; the others read InfluxDB (through the cache), one by one."""
    out: list[dict | None] = _stream_answers(cfg, requests, feed) if feed is not None else [None] * len(requests)
    for i, request in enumerate(requests):
        if out[i] is not None:
            continue
        selector = dict(request.labels)
        if request.query is not None:
            selector["query"] = request.query
        from healthpipe.ml.data import latest_features  # here: pandas only where InfluxDB is read

        rows = latest_features(selector, window=request.window, cfg=cfg, cache=cache.get() if cache else None,
                               at_ms=request.at_ms)
        out[i] = {"at": request.at_ms if rows else None, "window": request.window,
                  "series": [_as_json(row) for row in rows],
                  "freshness": {"source": "influxdb", "offsets": None, "staleness_s": None}}
    return out  # type: ignore[return-value]


_NOT_LABELS = {"series_id", "ts", "query", "metric", "metric_type", *feature_fn.NAMES}


def _as_json(row: dict) -> dict:
    """One series of an answer, from a latest_features row."""
    return {"series_id": row["series_id"], "query": row["query"], "metric": row["metric"],
            "metric_type": row["metric_type"],
            "labels": {k: v for k, v in row.items() if k not in _NOT_LABELS and v not in ("", None)},
            "features": {n: _json_number(row[n]) for n in feature_fn.NAMES}}


MEMO_NAMES = tuple(n for n in feature_fn.NAMES if n != "staleness_s")  # what a window's samples alone decide


def stream_features(cfg: HealthpipeConfig, store: StreamStore,
                    requests: list[FeatureRequest]) -> list[list[msgspec.Raw] | None]:
    """Per request, its answer's series from the store, each already JSON (what _as_json makes of latest_features'
    rows, encoded), or None where the store does not hold the whole window. NaN features are written null.

    Encoded here rather than by the caller: a series whose window is unchanged since the last request reuses its
    bytes, and only its staleness_s is written anew (a request for 1,000 series was mostly building and encoding
    1,000 dicts)."""
    found: list[list[tuple] | None] = []
    for request in requests:
        per_query: list[tuple] | None = []
        for q in cfg.select_queries([request.query] if request.query is not None else None):
            windows = store.windows(q, request.labels, request.at_ms - request.window_ms, request.at_ms)
            if windows is None:
                per_query = None
                break
            assert per_query is not None
            per_query += [(q.name, w) for w in windows]
        found.append(per_query)
    flat = [(i, name, w) for i, per_query in enumerate(found) if per_query for name, w in per_query]
    # a series whose window holds the samples an earlier request computed from takes those features (the same
    # samples give the same bits, tests/unit/test_features_fn.py); the others are computed together
    todo = [(j, w) for j, (_, _, w) in enumerate(flat) if w.known is None]
    ts, values, lengths = as_arrays([w for _, w in todo])
    at = np.array([requests[flat[j][0]].at_ms for j, _ in todo], dtype=np.int64)
    computed = feature_fn.compute_windows(ts, values, lengths, at)
    fresh = zip(*(computed[n].tolist() for n in MEMO_NAMES), strict=True)
    known: list[tuple | None] = [w.known for _, _, w in flat]
    for (j, window), computed_now in zip(todo, fresh, strict=True):
        window.remember(computed_now)
        known[j] = computed_now
    out: list[list[msgspec.Raw] | None] = [None if f is None else [] for f in found]
    for (i, name, window), features in zip(flat, known, strict=True):
        answer = out[i]
        assert answer is not None and features is not None
        cut = window.series.encoded(name, window.key, MEMO_NAMES, features)
        staleness = (requests[i].at_ms - window.key[1]) / 1000.0  # the window's newest sample: finite, repr is JSON
        answer.append(msgspec.Raw(cut + repr(staleness).encode() + b"}}"))
    return out


MAX_BODY_BYTES = 1024 * 1024
MAX_BATCH = 1000


def parse_batch(cfg: HealthpipeConfig, body: bytes) -> list[FeatureRequest]:
    """POST /features' body as checked requests; ConfigError naming the first bad one (by its index)."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"the body is not JSON: {exc}") from None
    items = doc.get("requests") if isinstance(doc, dict) else None
    if not isinstance(items, list) or not items:
        raise ConfigError('the body must be {"requests": [{"query": ..., "match": {...}, "window": ..., "at": ...}]}')
    if len(items) > MAX_BATCH:
        raise ConfigError(f"{len(items)} requests in one body; at most {MAX_BATCH}")
    out = []
    for i, item in enumerate(items):
        try:
            if not isinstance(item, dict) or set(item) - {"query", "match", "window", "at"}:
                raise ConfigError("an object with query, match, window and at (each optional)")
            match = item.get("match", {})
            if not isinstance(match, dict):
                raise ConfigError("match: an object of label names to values")
            at = item.get("at")
            out.append(parse_request(cfg, item.get("query"), match, str(item.get("window", "5m")),
                                     None if at is None else str(at)))
        except ConfigError as exc:
            raise ConfigError(f"requests[{i}]: {exc}") from None
    return out


OFF_LOOP_THREADS = 8  # requests answered off the event loop at once (the rest queue)


class FeatureServer:
    def __init__(self, cfg: HealthpipeConfig, port: int, host: str = "127.0.0.1"):
        self.cfg = cfg
        self.registry = CollectorRegistry()
        window_reads = Counter("healthpipe_features_window_reads_total",
                               "/features windows by how they were read: cached (counts only), newest, whole",
                               ["how"], registry=self.registry)
        self.cache = LazyWindowCache(cfg, on_read=lambda how: window_reads.labels(how).inc())
        self.feed: StreamFeed | None = None
        caches: list = [self.cache.entries]
        if cfg.features.stream:
            self.feed = StreamFeed(cfg, StreamStore(cfg.features.stream_span.ms, cfg.features.stream_max_series))
            caches += [self.feed.store, self.feed.identities]
            feed = self.feed
            Gauge("healthpipe_features_stream_staleness_seconds", "Seconds since the stream store last held all the "
                  "topic had (NaN before the first time)", registry=self.registry).set_function(
                lambda: s if (s := feed.staleness_s()) is not None else math.nan)
            Gauge("healthpipe_features_stream_fills", "Fills of the stream store from InfluxDB (start, breaks)",
                  registry=self.registry).set_function(lambda: feed.fills)
        self.registry.register(CacheCollector(caches))
        self.latency = Histogram("healthpipe_features_request_seconds", "Time to answer /features",
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=self.registry)
        self.requests = Counter("healthpipe_features_requests_total", "/features requests by outcome", ["outcome"],
                                registry=self.registry)
        # requests that read InfluxDB (they wait on the network) or ask for many series (a bulk read of 10,000
        # windows takes ~130 ms): off the event loop, which keeps answering the one-series requests meanwhile
        self.pool = ThreadPoolExecutor(OFF_LOOP_THREADS, thread_name_prefix="features-pool")
        f = cfg.features
        self.http = BackgroundHTTPServer(self.app, host, port, name="features",
                                         tls_cert_file=f.tls_cert_file, tls_key_file=f.tls_key_file)

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI app: the routes, the token, and the answers (the module's docstring)."""
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        post = method == "POST"  # an early answer to a POST leaves its body unread: that connection is closed
        if path not in ("/features", "/metrics", "/healthz", "/readyz"):
            await respond(send, 404, b"not found\n", "text/plain", close=post)
            return
        if method not in ("GET", "POST") or (post and path != "/features"):
            await respond(send, 405, b"method not allowed\n", "text/plain",
                          {"Allow": "GET, POST" if path == "/features" else "GET"}, close=True)
            return
        if path in ("/features", "/metrics") and not self.authorized(header(scope, b"authorization")):
            self.requests.labels("unauthorized").inc()
            await respond(send, 401, b"", "text/plain", {"WWW-Authenticate": 'Bearer realm="healthpipe features"'},
                          close=post)
            return
        if path == "/metrics":
            await respond(send, 200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            await respond(send, 200, b"ok\n", "text/plain")
        elif path == "/readyz":
            why = self.not_ready()
            await respond(send, 503 if why else 200, f"{why or 'ok'}\n".encode(), "text/plain")
        elif post:
            await self._post(scope, receive, send)
        else:
            params = parse_qs(scope["query_string"].decode("latin-1"))
            await self._answer(send, lambda: [parse_params(self.cfg, params)], single=True)

    async def _post(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = header(scope, b"content-length")
        if declared is not None and not declared.isdigit():
            self.requests.labels("bad_request").inc()
            await respond(send, 400, b'{"error": "Content-Length: not a length"}', "application/json", close=True)
            return
        try:
            if declared is not None and int(declared) > MAX_BODY_BYTES:
                raise BodyTooLarge(f"body over {MAX_BODY_BYTES} bytes")
            body = await read_body(receive, MAX_BODY_BYTES)
        except (BodyTooLarge, ClientTimeout) as exc:
            self.requests.labels("bad_request").inc()
            status = 413 if isinstance(exc, BodyTooLarge) else 408
            await respond(send, status, msgspec.json.encode({"error": str(exc)}), "application/json", close=True)
            return
        await self._answer(send, lambda: parse_batch(self.cfg, body), single=False)

    async def _answer(self, send: Send, parse: Callable[[], list[FeatureRequest]], single: bool) -> None:
        """Answer on the loop, from memory, when the stream store covers a request for some series; in the pool a
        bulk request (a whole query, or a batch) and one the store does not cover (it reads InfluxDB). In the pool a
        long computation gives the GIL back to the loop every 5 ms (the interpreter's switch interval)."""
        t0 = time.perf_counter()
        try:
            requests = parse()
            bulk = len(requests) > 1 or not requests[0].labels
            answers = None if bulk else answer_from_stream(self.cfg, requests, self.feed)
            if answers is None:
                answers = await asyncio.get_running_loop().run_in_executor(
                    self.pool, answer_many, self.cfg, requests, self.cache, self.feed)
            body, status = (answers[0] if single else {"results": answers}), 200
            self.requests.labels("ok").inc()
        except ConfigError as exc:
            body, status = {"error": str(exc)}, 400
            self.requests.labels("bad_request").inc()
        except Retryable as exc:
            body, status = {"error": str(exc)}, 503
            self.requests.labels("unavailable").inc()
        except HealthpipeError as exc:
            body, status = {"error": str(exc)}, 500
            self.requests.labels("error").inc()
        except Exception:  # a bug, not the client's fault: it still gets an answer, the log the trace
            log.exception("features_request_failed")
            body, status = {"error": "internal error (logged)"}, 500
            self.requests.labels("error").inc()
        self.latency.observe(time.perf_counter() - t0)
        await respond(send, status, msgspec.json.encode(body), "application/json")

    def not_ready(self) -> str | None:
        """Why /readyz fails, or None: the stream store filling, or behind the topic for too long."""
        if self.feed is None:
            return None
        staleness = self.feed.staleness_s()
        if staleness is None:
            return "the stream store has not caught up with the topic yet"
        if staleness > self.cfg.features.max_staleness_seconds:
            return (f"the stream store is {staleness:.0f}s behind the topic "
                    f"(features.max_staleness_seconds {self.cfg.features.max_staleness_seconds:g})")
        return None

    def authorized(self, header: str | None) -> bool:
        """No token configured, or `Bearer <the token>` (compared in constant time)."""
        token = self.cfg.features.token.get_secret_value()
        if not token:
            return True
        scheme, _, given = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())

    @property
    def port(self) -> int:
        return self.http.port

    @property
    def address(self) -> tuple[str, int]:
        return self.http.address

    def start(self) -> FeatureServer:
        # threads (the feed's, the InfluxDB readers') and glibc gives threads heaps of their own, each kept at its
        # peak: two heaps are enough under one GIL (its effect is unmeasured: the B8 run quoted for it compared two
        # identical servers, BENCHMARKS.md)
        allocator.limit_arenas(2)
        if self.feed is not None:
            self.feed.start()
        self.http.start()
        log.info("features_serving port=%d", self.port)
        return self

    def stop(self) -> None:
        if self.feed is not None:
            self.feed.stop()
        self.http.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)
