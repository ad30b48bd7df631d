"""Kafka, InfluxDB and Prometheus in containers, for machines where a Docker engine runs and no native stack
does: the same images and settings as docker-compose.yml.

The specs are plain data (`ContainerSpec`), unit-tested without Docker (tests/unit/test_containers.py); only
`start()` talks to the engine. testcontainers' KafkaContainer cannot run apache/kafka:3.9.1 in KRaft mode, so
Kafka is a generic container with the KRaft settings docker-compose uses, advertised on a fixed host port.
Prometheus scrapes the demo app, which runs in the test process and is reached as host.docker.internal.
This path runs only where a Docker engine does; the native stack is what CI and this project's machines use.
"""

from __future__ import annotations

import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

KAFKA_IMAGE = "apache/kafka:3.9.1"
INFLUXDB_IMAGE = "influxdb:2.7.12"
PROMETHEUS_IMAGE = "prom/prometheus:v2.42.0"


@dataclass
class ContainerSpec:
    image: str
    env: dict[str, str] = field(default_factory=dict)
    ports: dict[int, int | None] = field(default_factory=dict)  # container port -> host port (None: any)
    volumes: dict[str, str] = field(default_factory=dict)  # host path -> container path
    command: list[str] | None = None
    extra_hosts: dict[str, str] = field(default_factory=dict)
    ready_log: str = ""


def kafka_spec(host_port: int) -> ContainerSpec:
    """Single-node KRaft, as in docker-compose.yml, advertised at localhost:<host_port> for the tests."""
    return ContainerSpec(KAFKA_IMAGE, env={
        "KAFKA_NODE_ID": "1", "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://localhost:{host_port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1", "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false"},
        ports={9092: host_port}, ready_log="Kafka Server started")


def influxdb_spec(token: str) -> ContainerSpec:
    return ContainerSpec(INFLUXDB_IMAGE, env={
        "DOCKER_INFLUXDB_INIT_MODE": "setup", "DOCKER_INFLUXDB_INIT_USERNAME": "healthpipe",
        "DOCKER_INFLUXDB_INIT_PASSWORD": uuid.uuid4().hex, "DOCKER_INFLUXDB_INIT_ORG": "healthpipe",
        "DOCKER_INFLUXDB_INIT_BUCKET": "health_metrics", "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN": token},
        ports={8086: None}, ready_log="Listening")


def prometheus_config(demo_app_port: int) -> dict:
    """The test-app job the tests query, pointing at the demo app in the test process (1 s scrapes)."""
    return {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [{"job_name": "test-app", "static_configs": [
                {"targets": [f"host.docker.internal:{demo_app_port}"], "labels": {"service": "demo-app"}}]}]}


def prometheus_spec(config_file: Path) -> ContainerSpec:
    return ContainerSpec(PROMETHEUS_IMAGE, ports={9090: None},
                         volumes={str(config_file): "/etc/prometheus/prometheus.yml"},
                         extra_hosts={"host.docker.internal": "host-gateway"}, ready_log="Server is ready")


def start(spec: ContainerSpec):
    """Start one spec with testcontainers; returns the running container."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    c = DockerContainer(spec.image)
    for k, v in spec.env.items():
        c = c.with_env(k, v)
    for inside, outside in spec.ports.items():
        c = c.with_bind_ports(inside, outside) if outside else c.with_exposed_ports(inside)
    for host, inside in spec.volumes.items():
        c = c.with_volume_mapping(host, inside)
    if spec.extra_hosts:
        c = c.with_kwargs(extra_hosts=spec.extra_hosts)
    if spec.command:
        c = c.with_command(spec.command)
    c.start()
    if spec.ready_log:
        wait_for_logs(c, spec.ready_log, timeout=120)
    return c


def start_all(free_port) -> tuple[dict[str, str], list]:
    """The three services plus an in-process demo app; returns (connection settings, closers)."""
    from healthpipe.ops.demo_app import serve

    demo_port = free_port()
    threading.Thread(target=serve, args=("0.0.0.0", demo_port), daemon=True).start()
    token = uuid.uuid4().hex
    config = Path(tempfile.mkdtemp()) / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(demo_port)))
    kafka_port = free_port()
    kafka = start(kafka_spec(kafka_port))
    influx = start(influxdb_spec(token))
    prometheus = start(prometheus_spec(config))

    def url(c, port: int) -> str:
        return f"http://{c.get_container_host_ip()}:{c.get_exposed_port(port)}"

    settings = {"kafka": f"localhost:{kafka_port}", "prometheus": url(prometheus, 9090),
                "influx": url(influx, 8086), "token": token}
    return settings, [kafka.stop, influx.stop, prometheus.stop]
