"""Where the native stack keeps things, and every port it uses: one place for versions, folders and ports."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from healthpipe.common.config import (
    ArchiveSettings,
    ConsumerSettings,
    FeaturesSettings,
    InfluxSettings,
    ProducerSettings,
    ReceiveSettings,
    VerifySettings,
)

KAFKA_VERSION = "3.9.1"
INFLUXDB_VERSION = "2.7.12"
SEAWEEDFS_VERSION = "v0.0.0-20261109003541-7506e5f91cd6"
PROMETHEUS3_VERSION = "v0.316.0"  # the Go module of Prometheus 3.16.0 (`stack up --with remote-write`)
ROOT = Path(__file__).resolve().parents[3]  # the checkout: scripts/ and config/ are read from it
SCRIPTS = ROOT / "scripts" / "stack"
PROMETHEUS_TEMPLATE = ROOT / "config" / "prometheus" / "prometheus.yml"
CACHE = Path(os.environ.get("HEALTHPIPE_CACHE", Path.home() / ".cache" / "healthpipe"))
STACK_DIR = Path(os.environ.get("HEALTHPIPE_STACK_DIR", ROOT / ".stack"))
MAX_BROKERS = 3


@dataclass(frozen=True)
class Ports:
    """Every port the native stack uses, all on 127.0.0.1. The processes' own come from the config defaults."""

    kafka: tuple[int, ...] = (9092, 9094, 9096)  # broker listener of node id 1, 2, 3
    kafka_controller: tuple[int, ...] = (9093, 9095, 9097)
    prometheus: int = 9090
    prometheus3: int = 9091  # Prometheus 3, remote-writing to the receiver (`--with remote-write`)
    receive: int = ReceiveSettings().port
    influxdb: int = 8086
    demo_app: int = 8000
    s3: int = 8333
    producer_metrics: int = ProducerSettings().metrics_port
    archive_metrics: int = ArchiveSettings().metrics_port
    verify_metrics: int = VerifySettings().metrics_port
    features: int = FeaturesSettings().port
    consumer_metrics: tuple[int, ...] = field(default_factory=lambda: tuple(
        ConsumerSettings().metrics_port + i for i in range(4)))  # up to four local replicas

    @property
    def producer_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.producer_metrics}/metrics"

    @property
    def consumer_metrics_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}/metrics" for p in self.consumer_metrics]


PORTS = Ports()
INFLUX = InfluxSettings()  # org and bucket the stack sets up: the config defaults
S3_BUCKET = "healthpipe-archive"
