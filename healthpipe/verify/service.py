"""Continuous verification (`healthpipe verify --every 5m --delay 2m`): the last closed interval, each time.

Intervals are `(t - every, t]` with t a multiple of `every` at least `delay` before now, so each sample is
verified once, after the producer and the consumer have had `delay` to deliver it. Results go to /metrics:

    healthpipe_verify_missing_samples{query}           missing in the last verified interval
    healthpipe_verify_extra_samples{query}             extra (and mismatched) in it
    healthpipe_verify_last_exact_timestamp_seconds{query}  end of the last interval that was exact
    healthpipe_verify_runs_total{outcome}              exact / different / unavailable

config/prometheus/alerts.yml alerts on missing > 0 for 10 minutes.
"""

from __future__ import annotations

import logging
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge

from healthpipe.common.config import HealthpipeConfig, QuerySettings
from healthpipe.common.errors import Retryable
from healthpipe.common.observability import StatusServer
from healthpipe.common.process import run_service
from healthpipe.verify import verification

log = logging.getLogger(__name__)


class VerifyMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.missing = Gauge("healthpipe_verify_missing_samples", "Samples missing in the last verified interval",
                             ["query"], registry=r)
        self.extra = Gauge("healthpipe_verify_extra_samples",
                           "Samples extra or with another value in the last verified interval", ["query"], registry=r)
        self.last_exact = Gauge("healthpipe_verify_last_exact_timestamp_seconds",
                                "End of the last verified interval that was exact", ["query"], registry=r)
        self.runs = Counter("healthpipe_verify_runs_total", "Verifications by outcome", ["outcome"], registry=r)
        self.interval_end = Gauge("healthpipe_verify_interval_end_timestamp_seconds",
                                  "End of the last interval verified (whatever the outcome)", registry=r)


class ContinuousVerifier:
    def __init__(self, cfg: HealthpipeConfig, queries: list[QuerySettings], every_s: float, delay_s: float,
                 bucket: str | None = None, full: bool = False, clock=time.time):
        self.cfg, self.queries, self.bucket, self.full, self.clock = cfg, queries, bucket, full, clock
        self.every_ms, self.delay_ms = int(every_s * 1000), int(delay_s * 1000)
        self.metrics = VerifyMetrics()
        self.status_server: StatusServer | None = None
        self._stop = threading.Event()
        self._done_until: int | None = None

    def initialize(self) -> None:
        pass

    def ready(self) -> bool:
        return not self._stop.is_set()

    def not_ready_reason(self) -> str:
        return "stopping" if self._stop.is_set() else ""

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        if self.status_server is not None:
            self.status_server.stop()

    def due_interval(self) -> tuple[int, int] | None:
        """The newest closed interval not verified yet."""
        end = (int(self.clock() * 1000) - self.delay_ms) // self.every_ms * self.every_ms
        if self._done_until is not None and end <= self._done_until:
            return None
        return end - self.every_ms, end

    def run_once(self) -> None:
        interval = self.due_interval()
        if interval is None:
            return
        start, end = interval
        try:
            report = verification.run(self.cfg, self.queries, start, end, self.bucket, self.full)
        except Retryable as exc:
            self.metrics.runs.labels("unavailable").inc()
            log.warning("verify_unavailable interval_end_ms=%d error=%s", end, exc)
            return  # the same interval is tried again next time
        for q in report.queries:
            self.metrics.missing.labels(q.name).set(q.missing + q.dead_lettered)
            self.metrics.extra.labels(q.name).set(q.extra + q.mismatched)
            if q.missing == q.extra == q.mismatched == q.dead_lettered == 0:
                self.metrics.last_exact.labels(q.name).set(end / 1000)
        self.metrics.interval_end.set(end / 1000)
        self.metrics.runs.labels("exact" if report.exact else "different").inc()
        log.info("verify_done interval=(%d,%d] exact=%s missing=%d extra=%d mismatched=%d", start, end,
                 report.exact, report.missing, report.extra, report.mismatched)
        self._done_until = end

    def run_continuous(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(min(10.0, self.every_ms / 1000))


def run_continuous(cfg: HealthpipeConfig, queries: list[QuerySettings], every_s: float, delay_s: float,
                   bucket: str | None, full: bool) -> int:
    verifier = ContinuousVerifier(cfg, queries, every_s, delay_s, bucket, full)
    return run_service("verify", verifier, cfg.verify.metrics_port, verifier.run_continuous,
                       host=cfg.pipeline.metrics_host)
