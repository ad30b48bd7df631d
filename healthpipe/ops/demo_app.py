"""The demo app (the plan's `test-app`): a fake web service whose /metrics Prometheus scrapes.

Simulated traffic includes 5xx bursts and latency spikes, so the four core queries (availability,
request rate, p95 latency, error rate) always have something to show.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

log = logging.getLogger(__name__)

ROUTES = [("GET", "/api/users", 0.45), ("GET", "/api/orders", 0.25), ("POST", "/api/orders", 0.15),
          ("GET", "/health", 0.10), ("DELETE", "/api/users", 0.05)]
EDGE_LABEL_VALUES = ("new\nline", "comma,here", "equals=here", 'quote"here', "back\\", "ünï✓ code", "sp ace",
                     "trailing\\ x")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class DemoTraffic:
    """Generates requests in the background and records them in its own registry."""

    def __init__(self, seed: int | None = None, requests_per_second: float = 50.0):
        self.rng = random.Random(seed)
        self.rps = requests_per_second
        self.registry = CollectorRegistry()
        self.requests = Counter("http_requests_total", "HTTP requests served",
                                ["method", "path", "status"], registry=self.registry)
        self.latency = Histogram("http_request_duration_seconds", "HTTP request latency",
                                 ["method", "path"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.in_flight = Gauge("http_requests_in_flight", "Requests being served", registry=self.registry)
        self.cpu = Gauge("app_cpu_usage_ratio", "Simulated CPU usage (0-1)", registry=self.registry)
        self.memory = Gauge("app_memory_usage_bytes", "Simulated resident memory", registry=self.registry)
        self.queue = Gauge("app_queue_depth", "Simulated work queue depth", registry=self.registry)
        # Edge cases the pipeline must carry exactly (verify and the tests read them): label values that break
        # naive line protocol, and values InfluxDB cannot store (the consumer drops and counts them).
        self.edge_labels = Gauge("demo_label_edge_cases", "A series per awkward label value", ["value"],
                                 registry=self.registry)
        for i, value in enumerate(EDGE_LABEL_VALUES):
            self.edge_labels.labels(value).set(i)
        self.special = Gauge("demo_special_values", "NaN and infinities", ["kind"], registry=self.registry)
        for kind, v in (("nan", float("nan")), ("pos_inf", float("inf")), ("neg_inf", float("-inf")),
                        ("finite", 1.5)):
            self.special.labels(kind).set(v)
        self._stop = threading.Event()
        self._incident_until = 0.0

    def tick(self, seconds: float) -> None:
        """Simulate `seconds` of traffic."""
        now = time.monotonic()
        if now > self._incident_until and self.rng.random() < 0.01:
            self._incident_until = now + self.rng.uniform(5, 20)  # an incident: errors and slowness
        incident = now < self._incident_until
        count = max(0, int(self.rng.gauss(self.rps * seconds, (self.rps * seconds) ** 0.5)))
        weights = [w for _, _, w in ROUTES]
        for _ in range(count):
            method, path, _w = self.rng.choices(ROUTES, weights)[0]
            error_p = 0.25 if incident else 0.02
            status = self.rng.choice(["500", "502", "503"]) if self.rng.random() < error_p else (
                "404" if self.rng.random() < 0.03 else "200")
            latency = self.rng.lognormvariate(-3.5, 0.6) * (8 if incident else 1)
            if self.rng.random() < 0.01:
                latency *= 20  # a spike
            self.requests.labels(method, path, status).inc()
            self.latency.labels(method, path).observe(latency)
        self.in_flight.set(self.rng.randint(0, 20) + (40 if incident else 0))
        self.cpu.set(min(1.0, max(0.0, self.rng.gauss(0.85 if incident else 0.35, 0.05))))
        self.memory.set(int(self.rng.gauss(300e6, 10e6)))
        self.queue.set(self.rng.randint(0, 5) + (100 if incident else 0))

    def run(self, period: float = 0.1) -> None:
        while not self._stop.wait(period):
            self.tick(period)

    def stop(self) -> None:
        self._stop.set()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def serve(host: str = "127.0.0.1", port: int = 8000, seed: int | None = None) -> None:
    traffic = DemoTraffic(seed)
    traffic.tick(1.0)  # every series exists before the first scrape
    threading.Thread(target=traffic.run, name="demo-traffic", daemon=True).start()
    server = make_server(host, port, make_wsgi_app(traffic.registry), handler_class=_QuietHandler)
    log.info("demo_app_serving url=http://%s:%d/metrics", host, port)
    try:
        server.serve_forever()
    finally:
        traffic.stop()
