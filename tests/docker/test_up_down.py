"""`healthpipe down` stops what `up` started: a native `up` (no Docker engine in sight), then an engine that
answers, then `down` must stop the native pipeline, not run `docker compose down`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from healthpipe.ops import stack
from healthpipe.ops.stack import started
from healthpipe.ops.stack.supervise import _alive

pytestmark = pytest.mark.docker


def _healthpipe(*args: str, path: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHPIPE_")}
    return subprocess.run([sys.executable, "-m", "healthpipe", *args], env={**env, "PATH": path}, cwd=stack.ROOT,
                          capture_output=True, text=True, timeout=600)


def test_down_after_a_native_up_stops_the_native_pipeline_though_docker_now_runs(image, tmp_path):
    docker_dir = str(Path(shutil.which("docker") or "/usr/bin/docker").parent)
    without_docker = ":".join(p for p in os.environ["PATH"].split(":")
                              if not (Path(p) / "docker").exists()) or "/nonexistent"
    brokers = stack.kafka_brokers()
    try:
        up = _healthpipe("up", path=without_docker)
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        record = json.loads(started.RECORD.read_text())
        assert record["mode"] == "native", record
        assert set(record["pids"]) == {"producer", "consumer", "archive", "features"}, record
        assert all(_alive(pid) for pid in record["pids"].values())
        # an engine answers now (this suite runs with one): down must still stop what up started
        assert subprocess.run(["docker", "info"], capture_output=True).returncode == 0
        down = _healthpipe("down", path=f"{docker_dir}:{os.environ['PATH']}")
        assert down.returncode == 0, down.stdout[-2000:] + down.stderr[-2000:]
        assert "compose" not in (down.stdout + down.stderr).lower(), down.stdout + down.stderr
        assert not any(_alive(pid) for pid in record["pids"].values()), "a pipeline process outlived `down`"
        assert not started.RECORD.exists()
    finally:
        for svc in stack.PIPELINE:
            stack.stop(svc)
        started.forget()
        # `down` stops the native stack too; the suites after this one need it as it was
        stack.up(brokers=brokers, with_s3=True)
