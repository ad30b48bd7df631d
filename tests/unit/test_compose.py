"""docker-compose.yml: valid for Compose, and in agreement with the config defaults and the native stack.

No Docker engine runs here, so `docker-compose config` (Debian's docker-compose 1.29, installed by
.ci/run) validates the file offline against the Compose schema.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from common import stack
from common.config import HealthpipeConfig
from common.kafka import topic_specs

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_compose_file_is_valid():
    if not shutil.which("docker-compose"):
        if os.environ.get("CI") == "true":
            pytest.fail("docker-compose (Debian package) is missing: .ci/run installs it")
        pytest.skip("docker-compose not installed (apt-get install docker-compose)")
    result = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            env={**os.environ, "INFLUXDB_TOKEN": "test"}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_images_match_the_native_stack_versions():
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{stack.KAFKA_VERSION}"
    assert SERVICES["influxdb"]["image"] == f"influxdb:{stack.INFLUXDB_VERSION}"


def test_topics_created_by_kafka_init_match_topic_specs():
    script = SERVICES["kafka-init"]["command"][0]
    for spec in topic_specs(HealthpipeConfig()):
        match = re.search(rf"--topic {re.escape(spec.name)}[\s\\]+--partitions (\d+)", script)
        assert match, f"kafka-init does not create {spec.name}"
        assert int(match.group(1)) == spec.partitions
        for key, value in spec.config.items():
            if key in ("retention.ms", "cleanup.policy"):
                assert f"{key}={value}" in script


def test_influxdb_init_matches_config_defaults():
    env = SERVICES["influxdb"]["environment"]
    defaults = HealthpipeConfig().load.influxdb
    assert (env["DOCKER_INFLUXDB_INIT_ORG"], env["DOCKER_INFLUXDB_INIT_BUCKET"]) == (defaults.org, defaults.bucket)


def _config_key_exists(var: str) -> bool:
    path = var.removeprefix("HEALTHPIPE_").lower().split("__")
    model = HealthpipeConfig
    for part in path:
        fields = model.model_fields
        if part not in fields:
            return False
        model = fields[part].annotation
    return True


def test_every_healthpipe_env_var_names_a_real_config_key():
    for name in ("demo-app", "producer", "consumer"):
        for var in SERVICES[name]["environment"]:
            if var.startswith("HEALTHPIPE_") and var != "HEALTHPIPE_CONFIG":
                assert _config_key_exists(var), f"{name}: {var} is not a config key"


def test_ports_agree_with_config_and_prometheus():
    cfg = HealthpipeConfig()
    assert SERVICES["producer"]["environment"]["HEALTHPIPE_PRODUCER__METRICS_PORT"] == str(cfg.producer.metrics_port)
    assert SERVICES["consumer"]["environment"]["HEALTHPIPE_CONSUMER__METRICS_PORT"] == str(cfg.consumer.metrics_port)
    prom = yaml.safe_load((ROOT / "config" / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert jobs["test-app"]["static_configs"][0]["targets"] == [f"demo-app:{stack.DEMO_APP_PORT}"]
    assert jobs["healthpipe-producer"]["static_configs"][0]["targets"] == [f"producer:{cfg.producer.metrics_port}"]
    assert jobs["healthpipe-consumer"]["dns_sd_configs"][0]["port"] == cfg.consumer.metrics_port
    assert "127.0.0.1:9090:9090" in SERVICES["prometheus"]["ports"]
    assert "127.0.0.1:8086:8086" in SERVICES["influxdb"]["ports"]


def test_consumers_scale():
    consumer = SERVICES["consumer"]
    assert consumer["deploy"]["replicas"] == 2
    assert "container_name" not in consumer and "ports" not in consumer
