"""The feature server's HTTP layer (one event loop, healthpipe/common/http_server.py): what waits on InfluxDB runs
off the loop, and a client that trickles its request is cut off."""

import socket
import threading
import time
import urllib.request

import pytest

from healthpipe.common import observability
from healthpipe.common.config import HealthpipeConfig
from healthpipe.ml import serve
from healthpipe.ml.serve import FeatureServer

pytestmark = pytest.mark.unit


def test_a_request_waiting_on_influxdb_does_not_hold_up_the_others(monkeypatch):
    """With the stream store off every /features request reads InfluxDB; while one waits (here: 3 s, stood in for
    by a slow answer_many), probes and /metrics are still answered at once, and the slow one completes."""
    released = threading.Event()
    entered = threading.Event()

    def slow_answer_many(*args, **kwargs):
        entered.set()
        released.wait(3)
        return [{"at": None, "window": "5m", "series": [], "freshness": {"source": "influxdb"}}]

    monkeypatch.setattr(serve, "answer_many", slow_answer_many)
    server = FeatureServer(HealthpipeConfig(features={"stream": False}), port=0).start()
    base = f"http://127.0.0.1:{server.port}"
    slow: dict = {}

    def ask() -> None:
        with urllib.request.urlopen(f"{base}/features?query=availability", timeout=10) as r:
            slow["status"], slow["body"] = r.status, r.read()

    try:
        asker = threading.Thread(target=ask)
        asker.start()
        assert entered.wait(5), "the slow request never reached answer_many"
        t0 = time.monotonic()
        for path in ("/healthz", "/readyz", "/metrics"):
            with urllib.request.urlopen(base + path, timeout=10) as r:
                assert r.status == 200
        waited = time.monotonic() - t0
        still_out = not released.is_set() and asker.is_alive()
        released.set()
        asker.join(10)
        assert still_out, "the slow request was not outstanding while the probes were answered"
        assert waited < 1.5, f"the probes waited {waited:.1f}s behind a request reading InfluxDB"
        assert slow["status"] == 200 and b'"influxdb"' in slow["body"]
    finally:
        released.set()
        server.stop()


def test_a_client_trickling_its_request_head_is_cut_off(monkeypatch):
    """One byte every 0.1 s never lets a connection go idle (uvicorn's own timer is only for idle kept-alive
    connections): the head must be whole within the client time-out, or the server hangs up."""
    monkeypatch.setattr(observability, "CLIENT_TIMEOUT_SECONDS", 0.5)
    server = FeatureServer(HealthpipeConfig(features={"stream": False}), port=0).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            t0, cut = time.monotonic(), False
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:  # 23 s if never cut
                try:
                    s.sendall(bytes([byte]))
                    time.sleep(0.1)
                    cut = s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
                except BlockingIOError:  # nothing to read: still connected
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    cut = True
                if cut:
                    break
            assert cut, "the server kept a connection whose request head never ended"
            assert time.monotonic() - t0 < 3
    finally:
        server.stop()


def test_answers_go_out_without_nagle():
    """Every accepted connection has TCP_NODELAY: an answer's head and body are two writes, and with Nagle on the
    body waited for the client's delayed ACK (40 ms an answer on a kept-alive connection)."""
    import http.client

    server = FeatureServer(HealthpipeConfig(features={"stream": False}), port=0).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() == b"ok\n"
        connections = server.http._server.server_state.connections  # uvicorn's: the protocols of open connections
        assert connections
        for protocol in connections:
            sock = protocol.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), "Nagle left on"
        conn.close()
    finally:
        server.stop()


def test_a_bulk_request_does_not_hold_up_one_series_requests(monkeypatch):
    """A whole-query request (every series: ~130 ms at 10,000 series) is computed off the loop; a one-series
    request the store covers is answered meanwhile. The store is stood in for: computing a whole-query answer
    (wherever it runs) takes until released, a one-series one is at once."""
    released = threading.Event()
    entered = threading.Event()

    def compute(requests) -> list[dict]:
        if not requests[0].labels:
            entered.set()
            released.wait(3)
        return [{"at": 1, "window": "5m", "series": [], "freshness": {"source": "stream"}} for _ in requests]

    monkeypatch.setattr(serve, "answer_from_stream", lambda cfg, requests, feed: compute(requests))
    monkeypatch.setattr(serve, "answer_many", lambda cfg, requests, cache, feed: compute(requests))
    server = FeatureServer(HealthpipeConfig(features={"stream": False}), port=0).start()
    base = f"http://127.0.0.1:{server.port}/features?query=availability"
    bulk: dict = {}

    def ask_all() -> None:
        with urllib.request.urlopen(base, timeout=10) as r:
            bulk["status"] = r.status

    try:
        asker = threading.Thread(target=ask_all)
        asker.start()
        assert entered.wait(5), "the bulk request never started computing"
        t0 = time.monotonic()
        with urllib.request.urlopen(f"{base}&match%5Binstance%5D=node-1", timeout=10) as r:
            assert r.status == 200 and b'"stream"' in r.read()
        waited = time.monotonic() - t0
        outstanding = not released.is_set() and asker.is_alive()
        released.set()
        asker.join(10)
        assert outstanding, "the bulk request was not outstanding while the one-series one was answered"
        assert waited < 1.5, f"the one-series request waited {waited:.1f}s behind a bulk one"
        assert bulk["status"] == 200
    finally:
        released.set()
        server.stop()
