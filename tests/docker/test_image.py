"""The image: the C fast path loaded from the wheel, the console script, non-root, an init as PID 1, and
the image's own producer, consumer and verify against the real stack, with InfluxDB equal to Prometheus."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from healthpipe import __version__
from tests.docker.conftest import docker
from tests.integration.test_producer import RAW_UP, wait_for_scrapes
from tests.support import influx
from tests.support.influx import iso
from tests.support.pipeline import committed_all, free_port, process_env, scrape, wait_until, write_config

pytestmark = pytest.mark.docker

INSIDE = """
import json, os, sys, healthpipe, healthpipe.schema as schema, healthpipe.receive.decode as receive
print(json.dumps({"fastline": schema.fastline.__file__, "receive_samples": receive._compiled.__file__,
                  "package": healthpipe.__file__, "uid": os.getuid(),
                  "config_exists": os.path.exists(os.environ["HEALTHPIPE_CONFIG"]),
                  "app": os.path.exists("/app"), "pid1": open("/proc/1/cmdline").read().split("\\0")[0]}))
"""


def test_the_image_loads_the_fast_path_from_the_installed_wheel_as_a_user(image):
    out = docker("run", "--rm", "--network", "none", "--entrypoint", "tini", image, "--", "python3", "-c", INSIDE)
    seen = json.loads(out.stdout)
    assert seen["fastline"].endswith(".so"), seen  # the compiled extension, not the Python engine
    assert seen["receive_samples"].endswith(".so"), seen  # and the receiver's
    assert seen["package"].startswith("/opt/healthpipe/lib/") and "site-packages" in seen["package"], seen
    assert not seen["app"], "sources copied into /app would shadow the installed package"
    assert seen["uid"] != 0, seen
    assert seen["config_exists"], seen
    assert seen["pid1"] == "tini", seen


def test_the_console_script_is_the_entry_point(image):
    assert docker("run", "--rm", "--network", "none", image, "--version").stdout.strip() == f"healthpipe {__version__}"
    assert "producer" in docker("run", "--rm", "--network", "none", image, "--help").stdout


def _run_args(name: str, cfg, config_dir, *command: str) -> list[str]:
    """`docker run` on the host network with the test's config mounted; secrets by name only (-e NAME takes
    the value from the docker CLI's environment), never on the command line."""
    secrets = [a for key in process_env(cfg) if key.startswith("HEALTHPIPE_") for a in ("-e", key)]
    return ["run", "--name", name, "--network", "host", "-v", f"{config_dir}:/config:ro", *secrets,
            "-e", "HEALTHPIPE_CONFIG=/config/healthpipe.yaml", *command]


def test_the_images_producer_consumer_and_verify_against_the_real_stack(image, services, containers, tmp_path):
    wait_for_scrapes(services, seconds=30)
    base = services.config()
    with influx.temporary_bucket(base.load.influxdb, "image") as bucket:
        port = free_port()
        cfg = services.config(extract={"queries": [RAW_UP], "max_backfill": "2m", "lag_seconds": 5},
                              influxdb={"bucket": bucket.bucket}, consumer={"metrics_port": port})
        config_dir = tmp_path / "config"
        config_dir.mkdir(mode=0o755)
        config_dir.chmod(0o755)  # the image's user (uid 10001) reads it; it holds no secret
        write_config(cfg, config_dir / "healthpipe.yaml").chmod(0o644)
        env = {**process_env(cfg), "PATH": os.environ["PATH"]}
        tag = uuid.uuid4().hex[:8]

        producer = f"hp-test-producer-{tag}"
        containers.append(producer)
        out = docker(*_run_args(producer, cfg, config_dir, image, "producer", "--once"), env=env, check=False)
        assert out.returncode == 0, out.stderr[-3000:]
        assert not committed_all(cfg), "the producer published nothing for the consumer to do"

        consumer = f"hp-test-consumer-{tag}"
        containers.append(consumer)
        docker(*_run_args(consumer, cfg, config_dir, "-d", image, "consumer"), env=env)
        wait_until(lambda: committed_all(cfg), 120, what="the image's consumer to commit everything")
        metrics = scrape(port)
        assert metrics.get("healthpipe_consumer_samples_written_total", 0) > 0, metrics
        # the image's HEALTHCHECK (healthpipe probe) finds the process's /healthz
        wait_until(lambda: docker("inspect", "--format", "{{.State.Health.Status}}", consumer).stdout.strip()
                   == "healthy", 60, what="the consumer container to report healthy")
        # docker stop = SIGTERM through tini: the consumer drains and exits 0 well within the grace
        docker("stop", "--time", "60", consumer)
        assert docker("inspect", "--format", "{{.State.ExitCode}}", consumer).stdout.strip() == "0"

        verifier = f"hp-test-verify-{tag}"
        containers.append(verifier)
        window = _published_window(cfg)
        out = docker(*_run_args(verifier, cfg, config_dir, image, "verify", "--from", iso(window[0]),
                                "--to", iso(window[1]), "--json"), env=env, check=False)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        doc = json.loads(out.stdout)
        assert doc["exact"] and doc["queries"][0]["expected"] > 0, doc


def _published_window(cfg) -> tuple[int, int]:
    """The range the producer's watermark covers: from its first window to the watermark."""
    from healthpipe.producer import watermarks

    marks = watermarks.load(cfg)
    end = min(marks.values())
    return end - 60_000, end
