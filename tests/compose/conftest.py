"""docker-compose.yml for real (make test-compose): `docker compose up` on a real Docker engine, every container on
the host network with the stand-in images of compose.local.yml, driven through testcontainers' DockerCompose.

It binds the native stack's ports, so the native stack must be down (make test-compose stops it)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from testcontainers.compose import DockerCompose

from healthpipe.common.config import HealthpipeConfig, load_config
from healthpipe.ops.stack.compose import env_from_example

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "hp-compose-test"
FILES = ["docker-compose.yml", "compose.local.yml", "tests/compose/compose.test.yml"]
PORTS = {"Kafka": 9092, "InfluxDB": 8086, "Prometheus": 9090, "S3": 8333, "demo app": 8000, "producer": 8001,
         "receive": 8009, "features": 8010}


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _images_present() -> None:
    """The images the two files name: healthpipe's own and the stand-ins (make compose-images builds them)."""
    local = yaml.safe_load((ROOT / "compose.local.yml").read_text().replace("!reset", ""))["services"]
    standins = {svc["image"] for svc in local.values() if "image" in svc}
    images = {"healthpipe:latest", "healthpipe-demo:latest"} | standins
    missing = sorted(image for image in images
                     if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0)
    if missing:
        pytest.fail(f"images missing: {missing}: make compose-images", pytrace=False)


class Compose(DockerCompose):
    """testcontainers' DockerCompose (up and down, the -f/--env-file command line) plus the other compose commands
    the tests need (scale, pause, kill, start, run) and the services' logs for a failure message."""

    name: str  # the project's name (COMPOSE_PROJECT_NAME): its volumes are <name>_<volume>
    secrets: dict[str, str]  # the generated .env
    started_ms: int  # when this project's `up` began: its Prometheus holds nothing older

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([*self.compose_command_property, *args], cwd=ROOT, capture_output=True, text=True,
                                timeout=timeout, env={**os.environ, "COMPOSE_PROJECT_NAME": self.name})
        if check and result.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}\n{self.tail()}")
        return result

    def tail(self, lines: int = 30) -> str:
        """The services' last log lines, for a failure message."""
        return self.run("logs", "--no-color", "--tail", str(lines), timeout=60, check=False).stdout[-8000:]


@contextlib.contextmanager
def compose_project(tmp_path_factory: pytest.TempPathFactory, project_name: str, env_files: tuple[str, ...] = (),
                    profiles: tuple[str, ...] = ()) -> Iterator[Compose]:
    """A compose project up for the length of the block (`up --detach`, then `down --volumes`): the three files,
    a fresh .env, and any further env files (config/compose-secure.env) and profiles."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        pytest.fail("no Docker engine with Compose v2: scripts/docker/engine.sh start; scripts/docker/compose.sh",
                    pytrace=False)
    taken = [name for name, port in PORTS.items() if _port_taken(port)]
    if taken:
        pytest.fail(f"ports of {taken} are in use: stop the native stack first (make stack-down)", pytrace=False)
    _images_present()
    env_file = tmp_path_factory.mktemp("compose") / ".env"
    env_file.write_text(env_from_example((ROOT / ".env.example").read_text()))
    os.environ["COMPOSE_PROJECT_NAME"] = project_name  # testcontainers runs compose with the caller's environment
    project = Compose(context=str(ROOT), compose_file_name=FILES, wait=False, profiles=list(profiles) or None,
                      env_file=[str(env_file), *(str(ROOT / f) for f in env_files)])
    project.name = project_name
    project.secrets = dict(line.split("=", 1) for line in env_file.read_text().splitlines()
                           if "=" in line and not line.startswith("#"))
    project.run("down", "--volumes", "--remove-orphans", check=False)  # a previous run's leftovers
    project.started_ms = int(time.time() * 1000)
    try:
        project.start()  # `docker compose ... up --detach` (the images exist: nothing is built or pulled)
        yield project
    finally:
        project.stop(down=True)  # `down --volumes`: containers and this run's named volumes
        os.environ.pop("COMPOSE_PROJECT_NAME", None)


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compose]:
    with compose_project(tmp_path_factory, PROJECT) as project:
        yield project


@pytest.fixture(scope="module")
def cfg(compose: Compose) -> HealthpipeConfig:
    """The config the compose services run with, as seen from the host: same topics, group and token."""
    return load_config(path=ROOT / "config" / "healthpipe.yaml", environment=False,
                       kafka={"bootstrap_servers": "127.0.0.1:9092"},
                       extract={"prometheus_url": "http://127.0.0.1:9090"},
                       load={"influxdb": {"url": "http://127.0.0.1:8086", "token": compose.secrets["INFLUXDB_TOKEN"]}})


def wait(predicate, timeout: float, what: str, compose: Compose, interval: float = 1.0):
    """Poll until `predicate()` is truthy and return its value; on time-out fail with the services' logs."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # a service still starting: not yet
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})\n{compose.tail()}")
