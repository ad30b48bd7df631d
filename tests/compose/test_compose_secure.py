"""docker-compose's `secure` profile for real: Kafka over SASL_SSL with ACLs and InfluxDB over https, each
container with only its own role's credentials (secure-init and secure-grant made them). The pipeline is exact,
each role passes `check --role` with what its container holds and fails another role's, plaintext is refused,
and `down && up` keeps every credential working.

A project of its own, never beside test_compose_up.py's (the same ports); the tests run in order on it."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from healthpipe.common.config import HealthpipeConfig, load_config
from tests.compose.conftest import ROOT, Compose, compose_project, wait
from tests.compose.test_compose_up import _caught_up
from tests.support import influx
from tests.support.influx import iso

STARTED_MS = int(time.time() * 1000)  # at import: only a lower bound (an hour of margin below)
PROJECT = "hp-compose-secure"
ROLES = {"producer": "producer", "consumer": "consumer", "archive": "archive", "verify": "reader",
         "tiers-init": "tiers"}


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compose]:
    with compose_project(tmp_path_factory, PROJECT, env_files=("config/compose-secure.env",),
                         profiles=("secure",)) as project:
        yield project


def _from_volume(compose: Compose, volume: str, name: str, dest: Path) -> Path:
    """A file secure-init or secure-grant wrote into one of the project's credential volumes."""
    out = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "cat", "-v",
                          f"{compose.name}_{volume}:/s:ro", "healthpipe:latest", f"/s/{name}"],
                         capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    dest.write_bytes(out.stdout)
    dest.chmod(0o600)
    return dest


@pytest.fixture(scope="module")
def operator(secure: Compose, tmp_path_factory: pytest.TempPathFactory) -> HealthpipeConfig:
    """The operator's view from the host: hp-admin over SASL_SSL and the operator token over https, trusting the
    CA secure-init made (as someone would with `docker compose cp` or the volume)."""
    folder = tmp_path_factory.mktemp("operator")
    wait(lambda: secure.run("ps", "--all", "--format", "{{.Service}} {{.State}}").stdout.count("secure-grant exited"),
         300, "secure-grant to finish", secure)
    ca = _from_volume(secure, "secure-operator", "ca.pem", folder / "ca.pem")
    password = _from_volume(secure, "secure-operator", "kafka.password", folder / "admin.password")
    return load_config(path=ROOT / "config" / "healthpipe.yaml", environment=False,
                       kafka={"bootstrap_servers": "127.0.0.1:9092",
                              "security": {"protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "username": "hp-admin",
                                           "password_file": str(password), "ca_file": str(ca)}},
                       extract={"prometheus_url": "http://127.0.0.1:9090"},
                       load={"influxdb": {"url": "https://127.0.0.1:8086", "ca_file": str(ca),
                                          "token": secure.secrets["INFLUXDB_TOKEN"]}})


def _one_shots_succeeded(compose: Compose) -> dict[str, str]:
    states = {}
    for line in compose.run("ps", "--all", "--format", "json").stdout.splitlines():
        row = json.loads(line)
        if row["Service"] in {"secure-init", "secure-grant", "kafka-init", "influxdb-init", "tiers-init"}:
            states[row["Service"]] = f"{row['State']} {row.get('ExitCode')}"
    return states


def _verify(compose: Compose, until_ms: int) -> dict:
    """`healthpipe verify` in the verify service's container: as hp-reader, with the reader's InfluxDB token."""
    out = compose.run("run", "--rm", "--no-deps", "-T", "verify", "verify",
                      "--from", iso(compose.started_ms - 60_000),
                      "--to", iso(until_ms), "--json", check=False, timeout=300)
    assert out.returncode == 0, f"verify exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-2000:]}"
    doc = json.loads(out.stdout)
    assert doc["exact"] and sum(q["expected"] for q in doc["queries"]) > 0, doc
    return doc


def test_the_secured_pipeline_is_exact(secure, operator):
    mark = wait(lambda: _caught_up(operator, secure.started_ms + 20_000), 300, "the secured pipeline to load 20 s",
                secure)
    assert _one_shots_succeeded(secure) == {s: "exited 0" for s in
                                            ("secure-init", "secure-grant", "kafka-init", "influxdb-init",
                                             "tiers-init")}
    assert influx.count(operator.load.influxdb, 'r._measurement == "health_metrics"',
                        start=iso(STARTED_MS - 3_600_000)) > 0
    _verify(secure, mark)


def _check(compose: Compose, service: str, role: str) -> tuple[int, str]:
    """`healthpipe check --role` in `service`'s container (its credentials): the exit code, the details."""
    out = compose.run("run", "--rm", "--no-deps", "-T", service, "check", "--role", role, "--json", check=False,
                      timeout=180)
    return out.returncode, out.stdout + out.stderr[-2000:]


def test_each_container_holds_exactly_its_roles_rights(secure, operator):
    for service, role in ROLES.items():
        code, out = _check(secure, service, role)
        assert code == 0, f"{service} as {role}:\n{out[-4000:]}"
    # and not another's: the consumer's credentials may not publish watermarks, the reader's may not write points
    code, out = _check(secure, "consumer", "producer")
    assert code == 1 and "User:hp-consumer lacks WRITE on topic health-metrics-watermarks" in out, out[-4000:]
    code, out = _check(secure, "verify", "consumer")
    assert code == 1 and "InfluxDB token cannot write bucket health_metrics" in out, out[-4000:]


def test_plaintext_is_refused_by_kafka_and_influxdb(secure, operator):
    admin = AdminClient({"bootstrap.servers": "127.0.0.1:9092", "log_level": 0})
    with pytest.raises(KafkaException):  # a TLS listener: a plaintext client never gets metadata
        admin.list_topics(timeout=5)
    assert AdminClient(operator.kafka.as_librdkafka_dict()).list_topics(timeout=10).topics  # TLS + SASL: yes
    # influxd answers plain HTTP on its TLS port with a 400 of its own, and nothing of the API
    answer = requests.get("http://127.0.0.1:8086/api/v2/buckets", timeout=5,
                          headers={"Authorization": f"Token {secure.secrets['INFLUXDB_TOKEN']}"})
    assert answer.status_code == 400 and "HTTPS" in answer.text, (answer.status_code, answer.text[:300])
    assert requests.get("https://127.0.0.1:8086/api/v2/buckets", timeout=5, verify=str(operator.load.influxdb.ca_file),
                        headers={"Authorization": f"Token {secure.secrets['INFLUXDB_TOKEN']}"}).status_code == 200


def test_down_and_up_keeps_every_credential(secure, operator):
    """secure-init and secure-grant run again on `up` and change nothing that a running client holds."""
    before = {r: _from_volume(secure, f"secure-{r}", "kafka.password", Path(f"/dev/shm/hp-{PROJECT}-{r}"))
              .read_text() for r in ("consumer", "reader")}
    secure.run("down", "--timeout", "60")
    down_at = int(time.time() * 1000)
    secure.run("up", "--detach", "--no-build", timeout=600)
    mark = wait(lambda: _caught_up(operator, down_at + 15_000), 300, "the secured pipeline to run again", secure)
    for role, password in before.items():
        path = _from_volume(secure, f"secure-{role}", "kafka.password", Path(f"/dev/shm/hp-{PROJECT}-{role}"))
        assert path.read_text() == password, role
        path.unlink()
    _verify(secure, mark)
