"""A real Prometheus 3 (built from its Go module) remote-writes its own metrics and the demo app's to
`healthpipe receive`, once with remote write 1.0 and once with 2.0; the consumer stores them; `healthpipe verify`
then finds InfluxDB equal to Prometheus 3's own query API, series by series and sample by sample."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
import yaml

from healthpipe.common.config import HealthpipeConfig, QuerySettings
from healthpipe.ops.stack import PORTS
from healthpipe.ops.stack.prometheus3 import V1, V2, prometheus3_command, remote_write_config
from healthpipe.receive.service import WRITE_PATH, ReceiveService
from healthpipe.verify import verification
from tests.support.pipeline import ConsumerThread, committed_all, free_port, wait_until

# Two series sets verify compares, both raw: every sample Prometheus 3 scraped is one it pushed
QUERIES = [QuerySettings(name="rw_up", promql="up", mode="raw", metric_type="prometheus"),
           QuerySettings(name="rw_scrape_samples", promql="scrape_samples_scraped", mode="raw",
                         metric_type="prometheus")]


@dataclass
class Pushed:
    cfg: HealthpipeConfig
    receiver: ReceiveService
    prometheus_url: str
    started_ms: int


def _query(url: str, promql: str) -> float:
    result = requests.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10).json()["data"]["result"]
    return sum(float(r["value"][1]) for r in result)


@pytest.fixture(params=[V1, V2], ids=["remote-write-1.0", "remote-write-2.0"])
def pushed(request, services, tmp_path) -> Iterator[Pushed]:
    # every metric Prometheus pushes (the default valid_metrics keeps only the demo's few: the rest would be dropped,
    # counted, and verify would agree on nothing)
    cfg = services.config(transform={"valid_metrics": []})
    cfg.receive.port = free_port()
    receiver = ReceiveService(cfg)
    receiver.initialize()
    threading.Thread(target=receiver.serve, daemon=True).start()
    consumer = ConsumerThread(cfg)
    port = free_port()
    config = remote_write_config(f"http://127.0.0.1:{receiver.port}{WRITE_PATH}", request.param,
                                 {"prometheus3": [f"127.0.0.1:{port}"], "test-app": [f"127.0.0.1:{PORTS.demo_app}"]})
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    started_ms = int(time.time() * 1000)
    log = (tmp_path / "prometheus3.log").open("w")
    prometheus = subprocess.Popen(prometheus3_command(tmp_path / "prometheus.yml", tmp_path / "data", port),
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        yield Pushed(cfg, receiver, f"http://127.0.0.1:{port}", started_ms)
    finally:
        prometheus.terminate()
        prometheus.wait(30)
        consumer.stop()
        receiver.stop()
        receiver.close()


def test_prometheus3_pushes_and_influxdb_equals_its_query_api(pushed):
    p = pushed
    time.sleep(20)  # Prometheus starts (a few seconds), then scrapes both jobs every second
    end_ms = int(time.time() * 1000) - 2_000
    # everything up to end_ms has been sent (Prometheus' queue is past it) and stored (the group committed all)
    wait_until(lambda: _query(p.prometheus_url, "prometheus_remote_storage_queue_highest_sent_timestamp_seconds")
               * 1000 > end_ms + 1_000, 60, what="Prometheus 3 to have sent past the range")
    wait_until(lambda: committed_all(p.cfg), 60, what="the consumer to store everything received")
    assert _query(p.prometheus_url, "prometheus_remote_storage_samples_failed_total") == 0
    sample = p.receiver.metrics.registry.get_sample_value
    assert sample("healthpipe_receive_samples_total") > 100
    cfg = p.cfg.model_copy(deep=True)
    cfg.extract.prometheus_url = p.prometheus_url
    report = verification.run(cfg, QUERIES, p.started_ms, end_ms)
    assert report.exact, report
    assert all(q.expected > 10 for q in report.queries), [(q.name, q.expected, q.present) for q in report.queries]
