"""A small fault-injecting HTTP proxy: forwards to a real service, or answers with a scripted failure.

Used to make Prometheus or InfluxDB answer 500/429/503 for a while without stopping them.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests


class FaultProxy:
    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.fail_status: int | None = None  # None: forward; else answer this status
        self.fail_headers: dict[str, str] = {}
        self.fail_path_prefix = ""  # only requests under this path fail (e.g. "/api/v2/write")
        self.requests = 0
        self.failed = 0
        self.delay = 0.0
        proxy = self
        session = requests.Session()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                proxy.requests += 1
                status = proxy.fail_status
                if status is not None and self.path.startswith(proxy.fail_path_prefix):
                    proxy.failed += 1
                    payload = b'{"status":"error","errorType":"injected","error":"fault proxy"}'
                    self.send_response(status)
                    for k, v in proxy.fail_headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if proxy.delay and self.path.startswith(proxy.fail_path_prefix):
                    threading.Event().wait(proxy.delay)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                resp = session.request(self.command, proxy.upstream + self.path, data=body, headers=headers,
                                       timeout=120)
                content = resp.content
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = _handle

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
