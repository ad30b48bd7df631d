"""ProducerService (the plan's SimpleETLPipeline, for process 1): Prometheus → Kafka on a schedule.

Each cycle walks every query from its watermark up to now - lag, one window (chunk) at a time; each
window is one Kafka transaction holding its samples and its new watermark. A failing query is logged
and counted and does not stop the others; its watermark stays put, so the next cycle retries it.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator

from healthpipe.common import logs
from healthpipe.common.config import HealthpipeConfig, QuerySettings, load_config
from healthpipe.common.errors import (
    ConfigError,
    HealthpipeError,
    PrometheusRejected,
    PrometheusTooLarge,
    PrometheusUnavailable,
    PublishError,
    Retryable,
)
from healthpipe.common.kafka import ensure_topics
from healthpipe.common.messages import SeriesWindow
from healthpipe.common.observability import StatusServer
from healthpipe.common.process import run_service
from healthpipe.common.retry import retry
from healthpipe.producer import watermarks
from healthpipe.producer.extractor import PrometheusExtractor, Series
from healthpipe.producer.metrics import ProducerMetrics
from healthpipe.producer.publisher import TransactionalPublisher
from healthpipe.producer.windows import (
    RAW_MIN_CHUNK_MS,
    Window,
    chunk_ms,
    first_watermark,
    pending_windows,
    read_limit,
    split_window,
)

log = logging.getLogger(__name__)


class ProducerService:
    def __init__(self, cfg: HealthpipeConfig, metrics: ProducerMetrics | None = None,
                 clock=time.time, max_windows_per_cycle: int = 100, transactional_id: str | None = None):
        self.cfg = cfg
        self.metrics = metrics or ProducerMetrics()
        self.clock = clock
        self.max_windows_per_cycle = max_windows_per_cycle
        self.transactional_id = transactional_id or cfg.producer.transactional_id
        self.extractor = PrometheusExtractor(cfg.extract.prometheus_url, cfg.extract.request_timeout_seconds,
                                             cfg.extract.max_retries, on_request=self.metrics.on_prometheus_request,
                                             accept_warnings=cfg.extract.accept_warnings)
        self.publisher: TransactionalPublisher | None = None
        self.watermarks: dict[str, int] = {}
        # per query: the longest window Prometheus answered after refusing a longer one as too large
        self.window_limit_ms: dict[str, int] = {}
        # per query: the series its last window held (how to read the next one: whole, or in groups)
        self.window_series: dict[str, int] = {}
        self._stop = threading.Event()
        self._ready = False
        self._kafka_ok = True
        self._cycle_prometheus_now: int | None = None
        self.metrics.transaction_open.set_function(
            lambda: 1 if self.publisher is not None and self.publisher.in_transaction else 0)
        self.metrics.transactions_begun.set_function(
            lambda: self.publisher.transactions_begun if self.publisher is not None else 0)
        self.status_server: StatusServer | None = None
        self.give_up_after: float | None = None  # `--once` sets extract.timeout: a one-shot run must end

    # --- lifecycle (the plan's names) ----------------------------------------------------------------

    def initialize(self, give_up_after: float | None = None) -> None:
        """Check Prometheus and every query, create topics, fence predecessors, load watermarks.

        Waits (unready, retrying with backoff) while Prometheus or Kafka is unreachable, until stop() or
        `give_up_after` seconds (default: self.give_up_after, None = forever); a query Prometheus rejects is a
        ConfigError at once."""
        give_up_after = self.give_up_after if give_up_after is None else give_up_after
        retry(self._check_queries, "prometheus_check", give_up_after, stop=self._stop)
        retry(lambda: ensure_topics(self.cfg), "kafka_topics", give_up_after, stop=self._stop)
        retry(self.start_publisher, "kafka_transactions", give_up_after, stop=self._stop)
        self.watermarks = retry(lambda: watermarks.load(self.cfg), "watermarks_load", give_up_after, stop=self._stop)
        now_ms = int(self.clock() * 1000)
        for q in self.cfg.extract.queries:
            if q.name in self.watermarks:
                self._observe_watermark(q.name, now_ms)
        log.info("producer_initialized queries=%d watermarks=%s", len(self.cfg.extract.queries), self.watermarks)
        self._ready = True

    def _check_queries(self) -> None:
        for q in self.cfg.extract.queries:
            try:
                self.extractor.check_query(q)
            except PrometheusRejected as exc:
                raise ConfigError(f"extract.queries[{q.name}]: Prometheus rejects the PromQL "
                                  f"(mode={q.mode}): {exc.detail}") from None

    def start_publisher(self) -> None:
        """Register our transactional id with Kafka: fences a predecessor and aborts its open transaction."""
        if self.publisher is None:
            self.publisher = TransactionalPublisher(self.cfg, self.transactional_id)
        self.publisher.init()

    def run_single_cycle(self) -> dict[str, int]:
        """One pass over every query; returns samples published per query."""
        assert self.publisher is not None, "call initialize() first"
        t0 = time.perf_counter()
        self._cycle_prometheus_now = None
        published: dict[str, int] = {}
        if self.publisher.outcome_unknown and not self._reload_watermarks():
            return published
        for q in self.cfg.extract.queries:
            if self._stop.is_set():
                break
            published[q.name] = self._run_query(q)
        self.metrics.cycle_seconds.observe(time.perf_counter() - t0)
        return published

    def _reload_watermarks(self) -> bool:
        """After a commit whose outcome only Kafka knows, the watermarks as committed (False: Kafka still away).

        Our own copy still has the window's start: had the commit gone through after all (the coordinator
        completes a transaction it has begun to commit, whatever the client saw), publishing from it would put
        that window on the topic twice. The init fences first, so the old transaction is complete when read."""
        assert self.publisher is not None
        try:
            self.publisher.ensure_initialized()
            self.watermarks = watermarks.load(self.cfg)
        except Retryable as exc:
            self._kafka_ok = False
            log.error("watermarks_reload_failed error=%s", exc)
            return False
        self.publisher.outcome_unknown = False
        log.warning("watermarks_reloaded reason=commit_outcome_unknown watermarks=%s", self.watermarks)
        return True

    def run_continuous(self, interval: float | None = None) -> None:
        """Cycles every `interval` seconds until stop(); a cycle that overruns starts the next at once."""
        interval = interval or self.cfg.poll_interval_seconds
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.run_single_cycle()
            except HealthpipeError as exc:
                log.error("cycle_failed error=%s", exc)
            self._stop.wait(max(0.0, interval - (time.monotonic() - started)))

    def stop(self) -> None:
        """Ask the loop to stop after the current window's transaction has committed or aborted."""
        self._stop.set()

    def close(self) -> None:
        if self.publisher is not None:
            self.publisher.close()
        if self.status_server is not None:
            self.status_server.stop()

    def ready(self) -> bool:
        """Initialized, not stopping, and the last window reached Kafka (unready while Kafka is away)."""
        return self._ready and self._kafka_ok and not self._stop.is_set()

    def not_ready_reason(self) -> str:
        if self._stop.is_set():
            return "stopping"
        if not self._ready:
            return "starting: waiting for Kafka's topics and the watermarks"
        return "the last window did not reach Kafka (retrying; the watermark stays)" if not self._kafka_ok else ""

    # --- one query -----------------------------------------------------------------------------------

    def _run_query(self, q: QuerySettings) -> int:
        # "Now" is the earlier of our clock and Prometheus' own: with our clock ahead, a window ending in
        # Prometheus' future would be published before its last samples exist, and the watermark would move
        # past them for good.
        own_ms = int(self.clock() * 1000)
        now_ms = min(own_ms, self._prometheus_now_ms(own_ms))
        grid = q.grid_ms
        oldest = first_watermark(now_ms, self.cfg.extract.max_backfill.ms, grid)
        watermark = self.watermarks.get(q.name)
        if watermark is None:
            watermark = oldest
        elif watermark < oldest:
            # Past max_backfill we cannot (or were told not to) reach back: say so loudly, never silently.
            log.warning("backfill_truncated query=%s gap_from_ms=%d gap_to_ms=%d (extract.max_backfill=%s)",
                        q.name, watermark, oldest, self.cfg.extract.max_backfill)
            self.metrics.query_errors.labels(q.name, "backfill_truncated").inc()
            watermark = oldest
        limit = read_limit(now_ms, int(self.cfg.extract.lag_seconds * 1000), grid)
        size = min(chunk_ms(q.mode, q.step_ms, self.cfg.extract.raw_chunk.ms),
                   self.window_limit_ms.get(q.name, sys.maxsize))
        windows = pending_windows(watermark, limit, size)
        if len(windows) > 1:
            log.info("backfill query=%s windows=%d from_ms=%d to_ms=%d", q.name, len(windows), watermark, limit)
        total = 0
        for i, window in enumerate(windows[: self.max_windows_per_cycle]):
            if self._stop.is_set():
                break
            try:
                total += self.publish_splitting(q, window)
                self._kafka_ok = True
            except (Retryable, PrometheusRejected) as exc:
                stage = "kafka" if isinstance(exc, PublishError) else "prometheus"
                if stage == "kafka":
                    self._kafka_ok = False
                self.metrics.query_errors.labels(q.name, stage).inc()
                log.error("window_failed query=%s stage=%s start_ms=%d end_ms=%d error=%s",
                          q.name, stage, window.start_ms, window.end_ms, exc)
                break  # keep windows in order: the next cycle resumes at this one
            if len(windows) > 1:
                log.info("backfill_progress query=%s window=%d/%d end_ms=%d", q.name, i + 1, len(windows),
                         window.end_ms)
        self._observe_watermark(q.name, now_ms)
        return total

    def _prometheus_now_ms(self, fallback_ms: int) -> int:
        """Prometheus' clock, asked once per cycle; our own when it cannot answer (the window read will fail
        the same way and be retried)."""
        if self._cycle_prometheus_now is None:
            try:
                self._cycle_prometheus_now = self.extractor.now_ms()
            except (PrometheusUnavailable, PrometheusRejected) as exc:
                log.warning("prometheus_clock_unknown error=%s", exc)
                self._cycle_prometheus_now = fallback_ms
        return self._cycle_prometheus_now

    def publish_splitting(self, q: QuerySettings, window: Window) -> int:
        """publish_window, in smaller pieces while Prometheus refuses a read as too large: halves in time, each
        its own transaction advancing the watermark (consecutive windows: exactly once holds); a raw window of
        1 s that is still too large is read in groups of series and published whole, in one transaction."""
        try:
            return self.publish_window(q, window, advance_watermark=True)
        except PrometheusTooLarge as exc:
            smallest = q.step_ms if q.mode == "range" else RAW_MIN_CHUNK_MS
            halves = split_window(window, q.grid_ms, smallest)
            if halves is None:
                self.metrics.window_splits.labels(q.name, "series").inc()
                log.warning("window_split query=%s by=series label=%s start_ms=%d end_ms=%d error=%s", q.name,
                            self.cfg.extract.split_label, window.start_ms, window.end_ms, exc)
                return self.publish_window(q, window, advance_watermark=True, by_series=True)
        self.metrics.window_splits.labels(q.name, "time").inc()
        log.warning("window_split query=%s by=time start_ms=%d end_ms=%d halves_ms=%d", q.name, window.start_ms,
                    window.end_ms, halves[0].end_ms - halves[0].start_ms)
        total = self.publish_splitting(q, halves[0])
        self.window_limit_ms[q.name] = min(self.window_limit_ms.get(q.name, sys.maxsize),
                                           halves[0].end_ms - halves[0].start_ms)
        return total + self.publish_splitting(q, halves[1])

    def publish_window(self, q: QuerySettings, window: Window, advance_watermark: bool,
                       by_series: bool = False) -> int:
        """Read one window from Prometheus and publish it in one transaction; return samples published.
        by_series: read it in groups of series (`extract.split_label`), for a window too large for one answer."""
        assert self.publisher is not None
        groups = self._groups(q, window)
        reads: Iterator[list[Series]]
        if by_series or groups > 1:
            # read inside the transaction, a group at a time: each group's messages are handed to Kafka before
            # the next group is read
            reads = self.extractor.read_window_in_groups(q, window, self.cfg.extract.split_label, max(2, groups))
        else:
            reads = iter([self.extractor.read_window(q, window)])  # read before the transaction begins
        read = {"series": 0, "samples": 0}

        def messages() -> Iterator[SeriesWindow]:
            for series in reads:
                if by_series or groups > 1:
                    self.metrics.series_groups.labels(q.name).inc()
                samples = sum(len(s.samples) for s in series)
                self.metrics.samples_extracted.labels(q.name).inc(samples)
                read["series"] += len(series)
                read["samples"] += samples
                yield from (SeriesWindow(q.name, q.metric_type, s.labels, window.start_ms, window.end_ms, s.samples)
                            for s in series)
                del series  # or this group stays alive while the next one is read: two groups in memory

        try:
            sent = self.publisher.publish(q.name, messages(), window.end_ms if advance_watermark else None)
        except Exception as exc:
            if isinstance(exc, PublishError) or by_series or groups > 1:  # a transaction was open: publish aborted it
                self.metrics.transactions.labels("aborted").inc()
            raise
        self.metrics.transactions.labels("committed").inc()
        self.metrics.samples_published.labels(q.name).inc(read["samples"])
        self.metrics.messages_published.labels(q.name).inc(sent)
        self.window_series[q.name] = read["series"]
        if advance_watermark:
            self.watermarks[q.name] = window.end_ms
        log.debug("window_published query=%s start_ms=%d end_ms=%d series=%d samples=%d messages=%d groups=%d",
                  q.name, window.start_ms, window.end_ms, read["series"], read["samples"], sent, groups)
        return read["samples"]

    def _groups(self, q: QuerySettings, window: Window) -> int:
        """In how many groups of series to read a window of `q` so that each holds about
        extract.max_series_per_read series at most (1: whole). A range-mode query is always read whole."""
        if q.mode != "raw":
            return 1
        expected = self.window_series.get(q.name)
        if expected is None:  # the query's first window in this process: ask Prometheus
            try:
                expected = self.extractor.count_series(q, window)
            except PrometheusTooLarge:
                # even counting loads more than --query.max-samples allows (one series' samples at a time): read as
                # before, and let the refusals split the window
                return 1
            self.window_series[q.name] = expected
        return -(-expected // self.cfg.extract.max_series_per_read)

    def _observe_watermark(self, name: str, now_ms: int) -> None:
        if name in self.watermarks:
            self.metrics.watermark.labels(name).set(self.watermarks[name] / 1000)
            self.metrics.watermark_age.labels(name).set((now_ms - self.watermarks[name]) / 1000)


def main(config_path: str | None = None, once: bool = False) -> int:
    cfg = load_config(config_path)
    logs.configure_from(cfg)
    service = ProducerService(cfg)
    if once:
        service.give_up_after = cfg.extract.timeout.seconds

    def loop() -> None:
        if once:
            log.info("cycle_done published=%s", service.run_single_cycle())
        else:
            service.run_continuous()

    return run_service("producer", service, cfg.producer.metrics_port, loop, host=cfg.pipeline.metrics_host)
