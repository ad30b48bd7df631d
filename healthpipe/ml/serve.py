"""`healthpipe features serve`: the online features over HTTP (port features.port, default 8010).

    GET /features?query=request_rate&match[method]=GET&window=5m[&at=T]
      → {"at": ms, "window": "5m", "series": [{"series_id", "query", "metric", "metric_type", "labels": {...},
                                                "features": {"last", "mean", "min", "max", "stddev", "slope",
                                                             "count", "staleness_s"}}]}
    GET /metrics   request latency (healthpipe_features_request_seconds) and counts
    GET /healthz, /readyz

With features.token set, /features and /metrics need `Authorization: Bearer <token>` (else 401); with
features.tls_cert_file/tls_key_file, the server speaks https only. Label names must be Prometheus label names and
the query a configured one (else 400); label values are data, quoted into Flux by flux_string.

The features are `healthpipe.ml.data.latest_window`'s (as rows: `latest_features`), computed by the one function
the training export uses (`healthpipe.ml.features.compute`): served and trained values agree exactly
(tests/integration/test_ml.py). A WindowCache keeps each selector's recent samples, so a request reads only
what InfluxDB holds beyond them (healthpipe/ml/window_cache.py).
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import re
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from healthpipe.common import observability
from healthpipe.common.bounded import CacheCollector
from healthpipe.common.config import HealthpipeConfig
from healthpipe.common.errors import ConfigError, HealthpipeError, Retryable
from healthpipe.common.times import parse_duration_arg, parse_time
from healthpipe.ml import features as feature_fn
from healthpipe.ml.data import latest_features
from healthpipe.ml.window_cache import WindowCache

log = logging.getLogger(__name__)


LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _json_number(x: float) -> float | None:
    return None if isinstance(x, float) and math.isnan(x) else x


def answer(cfg: HealthpipeConfig, params: dict[str, list[str]], cache: WindowCache | None = None) -> dict:
    """The /features answer for the query string `params`; ConfigError for a bad request."""
    selector = {k[len("match["):-1]: v[0] for k, v in params.items() if k.startswith("match[") and k.endswith("]")}
    bad = [name for name in selector if not LABEL_NAME.fullmatch(name) or name == "query"]
    if bad:
        raise ConfigError(f"match[{bad[0][:100]!r}]: not a label name (letters, digits and _, not first a digit)")
    if "query" in params:
        selector["query"] = params["query"][0]
        cfg.select_queries([selector["query"]])  # a ConfigError naming it when no such query is configured
    window = params.get("window", ["5m"])[0]
    at = params.get("at", [None])[0]
    if parse_duration_arg(window, "window") > cfg.features.max_window.seconds:
        raise ConfigError(f"window {window!r} is longer than features.max_window ({cfg.features.max_window})")
    if at is not None:
        parse_time(at)  # a ConfigError naming it, before anything is read
    rows = latest_features(selector, window=window, at=at, cfg=cfg, cache=cache)
    fixed = {"series_id", "ts", "query", "metric", "metric_type", *feature_fn.NAMES}
    series = [{"series_id": row["series_id"], "query": row["query"], "metric": row["metric"],
               "metric_type": row["metric_type"],
               "labels": {k: v for k, v in row.items() if k not in fixed and v not in ("", None)},
               "features": {n: _json_number(row[n]) for n in feature_fn.NAMES}} for row in rows]
    at_ms = rows[0]["ts"] if rows else None
    return {"at": at_ms, "window": window, "series": series}


class FeatureServer:
    def __init__(self, cfg: HealthpipeConfig, port: int, host: str = "127.0.0.1"):
        self.cfg = cfg
        self.registry = CollectorRegistry()
        window_reads = Counter("healthpipe_features_window_reads_total",
                               "/features windows by how they were read: cached (counts only), newest, whole",
                               ["how"], registry=self.registry)
        self.cache = WindowCache(cfg, on_read=lambda how: window_reads.labels(how).inc())
        self.registry.register(CacheCollector([self.cache.entries]))
        self.latency = Histogram("healthpipe_features_request_seconds", "Time to answer /features",
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=self.registry)
        self.requests = Counter("healthpipe_features_requests_total", "/features requests by outcome", ["outcome"],
                                registry=self.registry)
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = observability.CLIENT_TIMEOUT_SECONDS

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                url = urlparse(self.path)
                if url.path in ("/features", "/metrics") and not server.authorized(self.headers.get("Authorization")):
                    server.requests.labels("unauthorized").inc()
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Bearer realm="healthpipe features"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if url.path == "/features":
                    t0 = time.perf_counter()
                    try:
                        body, status = answer(server.cfg, parse_qs(url.query), server.cache), 200
                        server.requests.labels("ok").inc()
                    except ConfigError as exc:
                        body, status = {"error": str(exc)}, 400
                        server.requests.labels("bad_request").inc()
                    except Retryable as exc:
                        body, status = {"error": str(exc)}, 503
                        server.requests.labels("unavailable").inc()
                    except HealthpipeError as exc:
                        body, status = {"error": str(exc)}, 500
                        server.requests.labels("error").inc()
                    except Exception:  # a bug, not the client's fault: it still gets an answer, the log the trace
                        log.exception("features_request_failed path=%s", url.path)
                        body, status = {"error": "internal error (logged)"}, 500
                        server.requests.labels("error").inc()
                    server.latency.observe(time.perf_counter() - t0)
                    self._send(status, json.dumps(body).encode(), "application/json")
                elif url.path == "/metrics":
                    self._send(200, generate_latest(server.registry), CONTENT_TYPE_LATEST)
                elif url.path in ("/healthz", "/readyz"):
                    self._send(200, b"ok\n", "text/plain")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        f = cfg.features
        if f.tls_cert_file and f.tls_key_file:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(f.tls_cert_file, f.tls_key_file)
            # the handshake in the handler thread (with its client timeout), not in the one accepting connections
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True, do_handshake_on_connect=False)

    def authorized(self, header: str | None) -> bool:
        """No token configured, or `Bearer <the token>` (compared in constant time)."""
        token = self.cfg.features.token.get_secret_value()
        if not token:
            return True
        scheme, _, given = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> FeatureServer:
        threading.Thread(target=self.httpd.serve_forever, name="features", daemon=True).start()
        log.info("features_serving port=%d", self.port)
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
