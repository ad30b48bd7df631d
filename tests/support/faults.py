"""A small fault-injecting HTTP proxy in front of a real service (Prometheus, InfluxDB).

For requests under `fail_path_prefix` it can: answer a scripted status (500/429/503 with headers); delay the
forwarded request (a slow sink, so work stays in flight); trickle the body to the service (a request open *at the
service*, not only at the proxy: what a kill of the service must hit); hang (read the request, never answer, keep
the socket open: a network partition, not a refused connection); or rewrite the JSON answer (Prometheus `warnings`).
Everything else is forwarded as is. `in_flight` counts requests the proxy holds right now (by method in
`in_flight_by_method`), `upstream_open` those the service has started to receive and not answered, and
`upstream_errors` those the service never answered (its connection broke: a kill hit them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import requests


def _trickled(body: bytes, seconds: float, pieces: int = 20):
    """The body in `pieces` parts spread over `seconds` (sent chunked): the service holds an open request."""
    step = max(1, -(-len(body) // pieces))
    for i in range(0, len(body), step):
        yield body[i:i + step]
        threading.Event().wait(seconds / pieces)


class FaultProxy:
    def __init__(self, upstream: str, keep_host: bool = False):
        self.upstream = upstream.rstrip("/")
        # S3 signs the Host header: a proxy in front of it must pass the client's Host through unchanged
        self.keep_host = keep_host
        self.fail_status: int | None = None  # None: forward; else answer this status
        self.fail_headers: dict[str, str] = {}
        self.fail_path_prefix = ""  # only requests under this path are touched (e.g. "/api/v2/write")
        self.delay = 0.0
        self.trickle = 0.0  # seconds over which a matching request's body is sent on to the service
        self.rewrite: Callable[[dict], dict] | None = None  # applied to JSON answers
        self.requests = 0
        self.failed = 0
        self.hung = 0
        self.in_flight = 0
        self.in_flight_by_method: dict[str, int] = {}
        self.upstream_open = 0
        self.upstream_errors = 0
        self._hang = threading.Event()  # set: hold matching requests
        self._release = threading.Event()
        self._lock = threading.Lock()
        proxy = self
        session = requests.Session()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(parts)
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else None

            def _handle(self) -> None:
                body = self._body()
                touched = self.path.startswith(proxy.fail_path_prefix)
                with proxy._lock:
                    proxy.requests += 1
                    proxy.in_flight += 1
                    proxy.in_flight_by_method[self.command] = proxy.in_flight_by_method.get(self.command, 0) + 1
                try:
                    if touched and proxy._hang.is_set():
                        proxy.hung += 1
                        proxy._release.wait()  # the client times out long before: a hung connection
                        self.close_connection = True
                        return
                    status = proxy.fail_status
                    if touched and status is not None:
                        proxy.failed += 1
                        self._send(status, b'{"status":"error","errorType":"injected","error":"fault proxy"}',
                                   proxy.fail_headers)
                        return
                    if touched and proxy.delay:
                        threading.Event().wait(proxy.delay)
                    dropped = ("content-length", "transfer-encoding", "expect") + (() if proxy.keep_host else ("host",))
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
                    data = _trickled(body, proxy.trickle) if touched and proxy.trickle and body else body
                    with proxy._lock:
                        proxy.upstream_open += 1
                    try:
                        resp = session.request(self.command, proxy.upstream + self.path, data=data, headers=headers,
                                               timeout=120)
                    except requests.RequestException:
                        with proxy._lock:
                            proxy.upstream_errors += 1
                        self.close_connection = True  # upstream gone: drop the connection like it did
                        return
                    finally:
                        with proxy._lock:
                            proxy.upstream_open -= 1
                    content = resp.content
                    if touched and proxy.rewrite is not None and "json" in resp.headers.get("Content-Type", ""):
                        content = orjson.dumps(proxy.rewrite(orjson.loads(content)))
                    hop = ("content-length", "transfer-encoding", "connection", "content-encoding")
                    keep = {k: v for k, v in resp.headers.items() if k.lower() not in hop}
                    if self.command == "HEAD":  # no body, but the size the client asks about
                        self.send_response(resp.status_code)
                        for k, v in {**keep, "Content-Length": resp.headers.get("Content-Length", "0")}.items():
                            self.send_header(k, v)
                        self.end_headers()
                        return
                    self._send(resp.status_code, content, keep)
                finally:
                    with proxy._lock:
                        proxy.in_flight -= 1
                        proxy.in_flight_by_method[self.command] -= 1

            def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def hang(self) -> None:
        """From now on, hold matching requests without answering (until heal())."""
        self._release.clear()
        self._hang.set()

    def heal(self) -> None:
        self._hang.clear()
        self._release.set()

    def close(self) -> None:
        self.heal()
        self.server.shutdown()
        self.server.server_close()
