"""A real Prometheus 3 (built from its Go module) remote-writes its own metrics and the demo app's to
`healthpipe receive`, once with remote write 1.0 and once with 2.0; the consumer stores them; `healthpipe verify`
then finds InfluxDB equal to Prometheus 3's own query API, series by series and sample by sample."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from healthpipe.common.config import HealthpipeConfig, QuerySettings
from healthpipe.ops.stack.prometheus3 import V1, V2
from healthpipe.receive.service import ReceiveService
from healthpipe.verify import verification
from tests.support.pipeline import ConsumerThread, committed_all, free_port, wait_until
from tests.support.prometheus3 import Prometheus3

# Two series sets verify compares, both raw: every sample Prometheus 3 scraped is one it pushed
QUERIES = [QuerySettings(name="rw_up", promql="up", mode="raw", metric_type="prometheus"),
           QuerySettings(name="rw_scrape_samples", promql="scrape_samples_scraped", mode="raw",
                         metric_type="prometheus")]


@dataclass
class Pushed:
    cfg: HealthpipeConfig
    receiver: ReceiveService
    prometheus: Prometheus3
    started_ms: int


def pushed_config(services) -> HealthpipeConfig:
    """Every metric Prometheus pushes is stored: the default transform.valid_metrics keeps only the demo's few (the
    rest would be dropped, counted, and verify would agree on nothing)."""
    cfg = services.config(transform={"valid_metrics": []})
    cfg.receive.port = free_port()
    return cfg


@pytest.fixture(params=[V1, V2], ids=["remote-write-1.0", "remote-write-2.0"])
def pushed(request, services, tmp_path) -> Iterator[Pushed]:
    cfg = pushed_config(services)
    receiver = ReceiveService(cfg)
    receiver.initialize()
    threading.Thread(target=receiver.serve, daemon=True).start()
    consumer = ConsumerThread(cfg)
    started_ms = int(time.time() * 1000)
    prometheus = Prometheus3(tmp_path, receiver.port, request.param)
    try:
        yield Pushed(cfg, receiver, prometheus, started_ms)
    finally:
        prometheus.stop()
        consumer.stop()
        receiver.stop()
        receiver.close()


def verify_exact(cfg: HealthpipeConfig, prometheus: Prometheus3, start_ms: int, end_ms: int) -> None:
    """`healthpipe verify` of both series sets against Prometheus 3: exact, and not vacuously."""
    cfg = cfg.model_copy(deep=True)
    cfg.extract.prometheus_url = prometheus.url
    report = verification.run(cfg, QUERIES, start_ms, end_ms)
    assert report.exact, report
    assert all(q.expected > 10 for q in report.queries), [(q.name, q.expected, q.present) for q in report.queries]


def stored_up_to(cfg: HealthpipeConfig, prometheus: Prometheus3, timeout: float = 120) -> int:
    """A moment a little in the past once everything Prometheus 3 scraped up to it is sent (its queue is past it)
    and stored (the consumer group committed all it was given): the end of a range to verify."""
    end_ms = int(time.time() * 1000) - 2_000
    wait_until(lambda: prometheus.sent_past(end_ms + 1_000), timeout, what="Prometheus 3 to have sent past the range")
    wait_until(lambda: committed_all(cfg), timeout, what="the consumer to store everything received")
    return end_ms


def test_prometheus3_pushes_and_influxdb_equals_its_query_api(pushed):
    p = pushed
    time.sleep(15)  # both jobs scraped every second
    end_ms = stored_up_to(p.cfg, p.prometheus)
    assert p.prometheus.value("prometheus_remote_storage_samples_failed_total") == 0
    assert p.receiver.metrics.registry.get_sample_value("healthpipe_receive_samples_total") > 100
    verify_exact(p.cfg, p.prometheus, p.started_ms, end_ms)
