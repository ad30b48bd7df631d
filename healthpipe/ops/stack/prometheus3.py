"""Prometheus 3 on the native stack, on request (`stack up --with remote-write`): built from its Go module
(scripts/stack/build-prometheus3.sh), it scrapes the demo app and itself and remote-writes to `healthpipe receive`
(started beside it). Debian's Prometheus 2.42 stays the producer's query path: the tests of the producer, verify
and the chaos suite were measured against it, and a 2.x query API is what many users still poll.

The remote_write block is built in one place (`remote_write_config`), for the stack and for the tests that run
their own Prometheus 3 against a receiver of their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from healthpipe.ops.stack.paths import CACHE, PORTS, PROMETHEUS3_VERSION, STACK_DIR
from healthpipe.ops.stack.supervise import Service, http_ok, run_script

V1 = "prometheus.WriteRequest"
V2 = "io.prometheus.write.v2.Request"


def prometheus3_binary() -> Path:
    """The cached Prometheus 3 binary, built on first use (about 5 minutes cold)."""
    run_script("build-prometheus3.sh", PROMETHEUS3_VERSION=PROMETHEUS3_VERSION)
    return CACHE / f"prometheus-{PROMETHEUS3_VERSION}" / "prometheus"


def remote_write_config(url: str, message: str, scrape: dict[str, list[str]], interval: str = "1s",
                        send_deadline: str | None = "1s") -> dict[str, Any]:
    """A Prometheus 3 config scraping `scrape` (job -> targets) every `interval` and remote-writing everything to
    `url` with `message` (V1 or V2). Queue settings as Prometheus' defaults, except the send deadline: 1 s (the
    default 5 s only delays the tests; None keeps Prometheus' default)."""
    queue = {"batch_send_deadline": send_deadline} if send_deadline else {}
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}
                           for job, targets in scrape.items()],
        "remote_write": [{"url": url, "protobuf_message": message,
                          "queue_config": queue,
                          "metadata_config": {"send": message == V1}}],
    }


def prometheus3_command(config_file: Path, data_dir: Path, port: int) -> list[str]:
    return [str(prometheus3_binary()), f"--config.file={config_file}", f"--storage.tsdb.path={data_dir}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]


def _dir() -> Path:
    return STACK_DIR / "prometheus3"


def _prepare() -> None:
    prometheus3_binary()
    (_dir() / "data").mkdir(parents=True, exist_ok=True)
    config = remote_write_config(f"http://127.0.0.1:{PORTS.receive}/api/v1/write", V2,
                                 {"test-app": [f"127.0.0.1:{PORTS.demo_app}"],
                                  "prometheus3": [f"127.0.0.1:{PORTS.prometheus3}"]})
    (_dir() / "prometheus.yml").write_text("# Rendered by `healthpipe stack up --with remote-write`\n"
                                           + yaml.safe_dump(config, sort_keys=False))


PROMETHEUS3 = Service(
    "prometheus3", command=lambda: prometheus3_command(_dir() / "prometheus.yml", _dir() / "data", PORTS.prometheus3),
    prepare=_prepare, ready=lambda: http_ok(f"http://127.0.0.1:{PORTS.prometheus3}/-/ready"), start_timeout=600)
