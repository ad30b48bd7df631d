"""The pipeline on a real 3-broker Kafka cluster (make test-cluster): producer + 3 consumer replicas over a known
data set while brokers die. Exactness is checked whole: every point in InfluxDB equals the data set's, every
offset committed, no (series, timestamp) twice on the topic."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from bench.producer import BenchPrometheus
from healthpipe.common.kafka import ensure_topics
from healthpipe.ops import stack
from tests.chaos.ledger import assert_no_duplicate_samples, point_of
from tests.support import influx
from tests.support.faults import FaultProxy
from tests.support.pipeline import (
    ConsumerProcess,
    committed_all,
    free_port,
    scrape,
    start_process,
    wait_until,
    write_config,
)

SERIES, HOURS, EVERY = 120, 1, 10
QUERY = {"name": "bench", "promql": "bench_metric", "mode": "raw", "metric_type": "gauge"}


@pytest.fixture(scope="session")
def cluster(services):
    if not services.native or stack.kafka_brokers() < 3:
        pytest.skip("needs the native stack as a 3-broker cluster: make test-cluster")
    all_brokers_up()
    meta = AdminClient({"bootstrap.servers": services.kafka_bootstrap}).list_topics(timeout=10)
    assert len(meta.brokers) == 3, f"expected 3 live brokers, found {sorted(meta.brokers)}"
    return services


@pytest.fixture(scope="session")
def data_set(tmp_path_factory) -> Iterator[BenchPrometheus]:
    """SERIES series × HOURS h at EVERY s, promtool-built, served by a Prometheus of its own (bench.producer)."""
    n_points = HOURS * 3600 // EVERY
    end_s = int(time.time()) // 60 * 60 - 600
    prom = BenchPrometheus(tmp_path_factory.mktemp("cluster-prom"), SERIES, end_s - n_points * EVERY + EVERY,
                           n_points, EVERY)
    prom.start_s, prom.n_points = end_s - n_points * EVERY + EVERY, n_points  # type: ignore[attr-defined]
    yield prom
    prom.close()


def expected_points(prom) -> set:
    """The data set as the consumer must write it (bench.producer.openmetrics' formula, the README's tags)."""
    out = set()
    for s in range(SERIES):
        tags = {"metric": "bench_metric", "metric_type": "gauge", "service": "bench", "job": "bench",
                "instance": f"node-{s}", "zone": f"z{s % 7}"}
        key = tuple(sorted(tags.items()))
        for i in range(prom.n_points):
            out.add(("health_metrics", key, "value", (s * 31 + i) % 1000 / 10, (prom.start_s + i * EVERY) * 1000))
    return out


@dataclass
class Pipeline:
    """Producer (backfilling the data set, 1-minute windows = many transactions) and 3 consumer replicas, as
    processes, Prometheus and InfluxDB slowed by fault proxies so the faults find work in flight."""

    cfg: object
    workdir: Path
    prom: BenchPrometheus
    prom_proxy: FaultProxy
    influx_proxy: FaultProxy
    producer_port: int
    producer: object = None
    consumers: list = field(default_factory=list)

    @property
    def end_s(self) -> int:
        return self.prom.start_s + (self.prom.n_points - 1) * EVERY  # type: ignore[attr-defined]

    def start_producer(self) -> None:
        mine = self.cfg.model_copy(update={"producer": self.cfg.producer.model_copy(  # type: ignore[attr-defined]
            update={"metrics_port": self.producer_port})})
        self.producer = start_process("producer", write_config(mine, self.workdir / "producer.yaml"), mine,
                                      log=self.workdir / "producer.log")

    def producer_metrics(self) -> dict[str, float]:
        return scrape(self.producer_port)

    def published_all(self) -> bool:
        return self.producer_metrics().get("healthpipe_producer_watermark_timestamp_seconds", 0) >= self.end_s

    def stop(self) -> None:
        for p in [self.producer, *[c.proc for c in self.consumers]]:
            if p is not None and p.poll() is None:
                p.terminate()
        for p in [self.producer, *[c.proc for c in self.consumers]]:
            if p is not None:
                p.wait(60)
        self.prom_proxy.close()
        self.influx_proxy.close()


def all_brokers_up() -> None:
    """Every broker running and every partition fully replicated (a failed scenario may leave one down)."""
    for node in range(1, 4):
        svc = stack.broker_node(node)
        if svc.pid() is None:
            stack.start(svc)
    wait_isr_recovered(180)


@pytest.fixture
def pipeline(cluster, data_set, tmp_path) -> Iterator[Pipeline]:
    all_brokers_up()
    prom_proxy, influx_proxy = FaultProxy(data_set.url), FaultProxy(cluster.influx_url)
    prom_proxy.fail_path_prefix, prom_proxy.delay = "/api/v1/query", 0.15
    influx_proxy.fail_path_prefix, influx_proxy.delay = "/api/v2/write", 0.2
    with influx.temporary_bucket(cluster.config().load.influxdb, "cluster") as bucket:
        cfg = cluster.config(
            kafka={"replication_factor": 3},
            extract={"prometheus_url": prom_proxy.url, "queries": [QUERY], "lag_seconds": 1, "raw_chunk": "1m",
                     "max_backfill": f"{int(time.time()) - data_set.start_s + 120}s", "interval_seconds": 1},
            transform={"valid_metrics": ["bench_metric"]},
            influxdb={"bucket": bucket.bucket, "url": influx_proxy.url, "batch_size": 1000},
            consumer={"batch_max_age_seconds": 0.5, "session_timeout_ms": 6000})
        ensure_topics(cfg)
        p = Pipeline(cfg, tmp_path, data_set, prom_proxy, influx_proxy, free_port())
        p.consumers = [ConsumerProcess(cfg, tmp_path, tmp_path / "consumers.log") for _ in range(3)]
        p.start_producer()
        try:
            yield p
        finally:
            p.stop()
            all_brokers_up()


def finish_and_check(p: Pipeline, timeout: float = 600) -> None:
    """Faults over: let everything catch up, then the exact check."""
    p.prom_proxy.delay = p.influx_proxy.delay = 0.0
    wait_until(p.published_all, timeout, what="the producer to publish the whole data set")
    wait_until(lambda: committed_all(p.cfg), timeout, what="the consumer group to commit everything")
    got = {point_of(r) for r in influx.points(p.cfg.load.influxdb.model_copy(  # type: ignore[attr-defined]
        update={"url": p.influx_proxy.upstream}), 'r.job == "bench"', start="0")}
    want = expected_points(p.prom)
    missing, extra = want - got, got - want
    assert not missing and not extra, f"missing={len(missing)} extra={len(extra)} e.g. {sorted(missing)[:2]}"
    assert_no_duplicate_samples(p.cfg)


def wait_isr_recovered(timeout: float = 120) -> None:
    wait_until(lambda: stack.under_replicated_partitions() == 0, timeout, what="every partition fully replicated")
