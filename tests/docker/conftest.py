"""The image as users run it (make test-docker): a real Docker engine, healthpipe's image built here, every
container on the host network (this machine allows loopback traffic only), the native stack as the services."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def image_name() -> str:
    version = next(line.split('"')[1] for line in (ROOT / "pyproject.toml").read_text().splitlines()
                   if line.startswith("version = "))
    return os.environ.get("HEALTHPIPE_IMAGE", f"healthpipe:{version}")


def docker(*args: str, timeout: float = 300, check: bool = True, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, **kw)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}: {result.stderr[-2000:]}")
    return result


@pytest.fixture(scope="session")
def image() -> str:
    """The image under test, built (on the machine's own base, scripts/docker/base-image.sh) if missing."""
    if not shutil.which("docker") or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine answers: scripts/docker/engine.sh start (as root)")
    name = image_name()
    if docker("image", "inspect", name, check=False).returncode != 0:
        subprocess.run(["make", "image", "PYTHON_IMAGE=local", f"IMAGE={name}"], cwd=ROOT, check=True, timeout=1200)
    return name


@pytest.fixture
def containers():
    """Names of the containers a test starts; each is removed afterwards, whatever happened."""
    started: list[str] = []
    yield started
    for name in started:
        docker("rm", "-f", name, check=False)
