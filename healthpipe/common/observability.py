"""The /metrics, /healthz and /readyz endpoints every healthpipe process serves.

Metrics live in an injected `CollectorRegistry`, so tests read values in isolation with
`registry.get_sample_value(...)` instead of sharing the global default registry.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

# Where a process records the port of its /healthz, for `healthpipe probe` (the image's HEALTHCHECK): the
# probe runs beside the process and cannot know which command, and so which configured port, it runs.
PROBE_FILE_ENV = "HEALTHPIPE_PROBE_FILE"
# A client that sends nothing for this long is dropped: a slow or idle connection (slowloris) would otherwise hold
# one of the server's threads for ever. Request lines and headers are bounded by http.server itself (64 KiB a line,
# 100 headers); these servers read no request body.
CLIENT_TIMEOUT_SECONDS = 10.0


class StatusServer:
    """Serves metrics from `registry`; /healthz is the process being alive, /readyz asks `ready()`."""

    def __init__(self, registry: CollectorRegistry, ready: Callable[[], bool], port: int, host: str = "127.0.0.1",
                 reason: Callable[[], str] = lambda: ""):
        self.registry = registry
        self.ready = ready
        self.reason = reason  # why not ready, in a line of /readyz's answer (no secrets: error texts, names)
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="status-server", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> StatusServer:
        self._thread.start()
        log.info("status_server_started port=%d", self.port)
        if probe_file := os.environ.get(PROBE_FILE_ENV):
            with open(probe_file, "w") as f:
                f.write(f"{self.port}\n")
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = CLIENT_TIMEOUT_SECONDS

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(server.registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._send(200, b"ok\n")
                elif path == "/readyz":
                    ok = server.ready()
                    why = "" if ok else server.reason()
                    self._send(200 if ok else 503, b"ready\n" if ok else f"not ready: {why or '-'}\n".encode())
                else:
                    self._send(404, b"not found\n")

            def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # scrapes every second would flood the log
                pass

        return Handler
