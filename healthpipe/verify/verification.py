"""One verification: every configured query (or the named ones) over a range, plus the dead letters of that range.

The range is clipped to what Prometheus still holds (its lowest stored timestamp, from its own /metrics):
verify says what it cut and never reports "exact" for what it could not read. A source that cannot be read
raises Retryable (exit 3), never a result.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import requests
from prometheus_client.parser import text_string_to_metric_families

from healthpipe.common.config import HealthpipeConfig, QuerySettings
from healthpipe.common.errors import PrometheusUnavailable
from healthpipe.common.progress import Steps
from healthpipe.common.times import iso
from healthpipe.producer.extractor import PrometheusExtractor
from healthpipe.verify.compare import QueryResult, verify_query
from healthpipe.verify.dead_lettered import DeadLetterCount, count_dead_letters
from healthpipe.verify.expected import Expected, Timings
from healthpipe.verify.stored import Stored

log = logging.getLogger(__name__)


@dataclass
class Report:
    start_ms: int
    end_ms: int
    queries: list[QueryResult]
    dead_letters: DeadLetterCount
    notes: list[str] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)

    @property
    def missing(self) -> int:
        return sum(q.missing for q in self.queries)

    @property
    def extra(self) -> int:
        return sum(q.extra for q in self.queries)

    @property
    def mismatched(self) -> int:
        return sum(q.mismatched for q in self.queries)

    @property
    def exact(self) -> bool:
        return self.missing == 0 and self.extra == 0 and self.mismatched == 0 and self.dead_letters.explained == 0

    def as_json(self) -> dict:
        return {"exact": self.exact, "from": self.start_ms, "to": self.end_ms, "missing": self.missing,
                "extra": self.extra, "mismatched": self.mismatched, "dead_lettered": self.dead_letters.explained,
                "dead_letters_by_reason": self.dead_letters.by_reason, "notes": self.notes,
                "timings": self.timings.as_json(),
                "queries": [q.as_json() for q in self.queries]}


def prometheus_lowest_ms(url: str, timeout: float = 10) -> int | None:
    """The oldest sample Prometheus still stores (prometheus_tsdb_lowest_timestamp on its own /metrics)."""
    try:
        text = requests.get(f"{url.rstrip('/')}/metrics", timeout=timeout).text
    except requests.RequestException as exc:
        raise PrometheusUnavailable("/metrics", f"Prometheus at {url} cannot be read: {exc}") from None
    for family in text_string_to_metric_families(text):
        if family.name == "prometheus_tsdb_lowest_timestamp":
            return int(family.samples[0].value)
    return None


def run(cfg: HealthpipeConfig, queries: list[QuerySettings], start_ms: int, end_ms: int, bucket: str | None = None,
        full: bool = False, progress: bool = False) -> Report:
    t0 = time.perf_counter()
    timings = Timings()
    extractor = PrometheusExtractor(cfg.extract.prometheus_url, cfg.extract.request_timeout_seconds,
                                    cfg.extract.max_retries, accept_warnings=cfg.extract.accept_warnings)
    notes = []
    lowest = prometheus_lowest_ms(cfg.extract.prometheus_url)
    if lowest is not None and start_ms < lowest:
        if lowest > end_ms:  # windows are (start, end]: a range ending at the oldest sample still holds it
            notes.append(f"the whole range is older than Prometheus' oldest sample ({iso(lowest)}): nothing verified")
            start_ms = end_ms
        else:
            notes.append(f"Prometheus holds nothing before {iso(lowest)}: verified from there, not from "
                         f"{iso(start_ms)} (samples Prometheus no longer has cannot be verified)")
            start_ms = lowest - 1  # windows are (start, end]
    influx = cfg.load.influxdb.model_copy(update={"bucket": bucket}) if bucket else cfg.load.influxdb
    stored = Stored(influx, timings)
    steps = Steps()

    def windows_done(name: str, done: int, total: int) -> None:
        steps(f"verify {name}", done, total, "windows")

    try:
        results = [verify_query(q, Expected(extractor, q, cfg.transform, timings, cfg.extract.split_label,
                                                     cfg.extract.max_series_per_read), stored,
                                start_ms, end_ms, full, windows_done if progress else None)
                   for q in queries] if start_ms < end_ms else [QueryResult(q.name) for q in queries]
    finally:
        steps.close()
        stored.close()
    t1 = time.perf_counter()
    letters = count_dead_letters(cfg, results, start_ms, end_ms)
    timings.kafka_s = time.perf_counter() - t1
    timings.total_s = time.perf_counter() - t0
    return Report(start_ms, end_ms, results, letters, notes, timings)
