"""Prometheus on the native stack (Debian's package), its config rendered from the one template docker-compose
mounts, config/prometheus/prometheus.yml."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import yaml

from healthpipe.ops.stack.paths import PORTS, PROMETHEUS_TEMPLATE, STACK_DIR
from healthpipe.ops.stack.supervise import Service, http_ok, run_script


def _prometheus_dir() -> Path:
    return STACK_DIR / "prometheus"


def render_prometheus_config(template: dict) -> dict:
    """docker-compose's prometheus.yml for the native stack: every target on 127.0.0.1, a 1 s scrape (tests
    wait for data), the consumer replicas found by DNS in Docker listed by port here, rule files by path."""
    cfg = copy.deepcopy(template)
    cfg["global"] = {**cfg.get("global", {}), "scrape_interval": "1s", "scrape_timeout": "1s",
                     "evaluation_interval": "1s"}
    cfg["rule_files"] = [str(PROMETHEUS_TEMPLATE.parent / Path(p).name) for p in cfg.get("rule_files", [])]
    for job in cfg["scrape_configs"]:
        for static in job.get("static_configs", []):
            static["targets"] = [f"127.0.0.1:{t.rsplit(':', 1)[1]}" for t in static["targets"]]
        if "dns_sd_configs" in job:
            del job["dns_sd_configs"]
            job["static_configs"] = [{"targets": [f"127.0.0.1:{p}" for p in PORTS.consumer_metrics]}]
    return cfg


def _prometheus_prepare() -> None:
    run_script("install-prometheus.sh")
    d = _prometheus_dir()
    (d / "data").mkdir(parents=True, exist_ok=True)
    rendered = render_prometheus_config(yaml.safe_load(PROMETHEUS_TEMPLATE.read_text()))
    (d / "prometheus.yml").write_text(f"# Rendered by `healthpipe stack up` from {PROMETHEUS_TEMPLATE}\n"
                                      + yaml.safe_dump(rendered, sort_keys=False))


def _prometheus_command() -> list[str]:
    d = _prometheus_dir()
    return [shutil.which("prometheus") or "/usr/bin/prometheus",
            f"--config.file={d / 'prometheus.yml'}", f"--storage.tsdb.path={d / 'data'}",
            f"--web.listen-address=127.0.0.1:{PORTS.prometheus}", "--web.enable-lifecycle",
            "--web.enable-admin-api", "--storage.tsdb.retention.time=15d", "--log.level=warn"]


def prometheus_service() -> Service:
    return Service("prometheus", command=_prometheus_command, prepare=_prometheus_prepare,
                   ready=lambda: http_ok(f"http://127.0.0.1:{PORTS.prometheus}/-/ready"))
