"""The testcontainers path, checked as data (no Docker engine here): the same images and settings as
docker-compose.yml, Kafka advertised where the tests connect, Prometheus scraping the demo app's job."""

from pathlib import Path

import yaml

from tests.support import containers

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def test_images_are_docker_composes():
    assert COMPOSE["kafka"]["image"] == containers.KAFKA_IMAGE
    assert COMPOSE["influxdb"]["image"] == containers.INFLUXDB_IMAGE
    assert COMPOSE["prometheus"]["image"] == containers.PROMETHEUS_IMAGE


def test_kafka_is_kraft_like_compose_and_advertised_on_its_host_port():
    spec = containers.kafka_spec(19092)
    assert spec.ports == {9092: 19092}
    assert spec.env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://localhost:19092"
    # compose's single-broker defaults (${VAR:-default} resolved as compose does without the cluster env file)
    compose = {k: str(v).split(":-")[-1].rstrip("}") if str(v).startswith("${") else str(v)
               for k, v in COMPOSE["kafka"]["environment"].items()}
    for key in ("KAFKA_PROCESS_ROLES", "KAFKA_CONTROLLER_LISTENER_NAMES", "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "KAFKA_AUTO_CREATE_TOPICS_ENABLE"):
        assert spec.env[key] == compose[key], key


def test_influxdb_is_set_up_like_compose():
    spec = containers.influxdb_spec("tok")
    env = COMPOSE["influxdb"]["environment"]
    for key in ("DOCKER_INFLUXDB_INIT_MODE", "DOCKER_INFLUXDB_INIT_ORG", "DOCKER_INFLUXDB_INIT_BUCKET"):
        assert spec.env[key] == env[key]
    assert spec.env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"] == "tok"


def test_prometheus_scrapes_the_test_app_job_in_the_test_process(tmp_path):
    cfg = containers.prometheus_config(18000)
    (job,) = cfg["scrape_configs"]
    assert job["job_name"] == "test-app"
    assert job["static_configs"][0]["targets"] == ["host.docker.internal:18000"]
    spec = containers.prometheus_spec(tmp_path / "p.yml")
    assert spec.extra_hosts == {"host.docker.internal": "host-gateway"}
    assert list(spec.volumes.values()) == ["/etc/prometheus/prometheus.yml"]
