"""`healthpipe check` (the plan's deploy/check script): is everything in place to run the pipeline?

Prints one OK/FAIL row per check with a remedy for each failure; exits non-zero if any check failed.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

from healthpipe.common.config import HealthpipeConfig, load_config
from healthpipe.common.errors import ConfigError

REQUIRED_MODULES = ["confluent_kafka", "requests", "pandas", "influxdb_client", "yaml", "pydantic_settings",
                    "prometheus_client", "orjson"]


@dataclass
class Result:
    name: str
    ok: bool
    detail: str
    remedy: str = ""


def _python_deps() -> Result:
    missing = []
    for module in REQUIRED_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    return Result("python dependencies", not missing, "all importable" if not missing else f"missing {missing}",
                  "make install (or pip install -e .)")


def _directories() -> Result:
    for d in ("logs", "data"):
        Path(d).mkdir(exist_ok=True)
    return Result("directories", True, "logs/ and data/ exist")


def _prometheus(cfg: HealthpipeConfig) -> Result:
    url = cfg.extract.prometheus_url
    try:
        body = requests.get(f"{url}/api/v1/query", params={"query": "up"}, timeout=5).json()
        ok = body.get("status") == "success"
        return Result("prometheus", ok, f"{url}: {len(body['data']['result'])} `up` series" if ok else str(body),
                      "check extract.prometheus_url")
    except (requests.RequestException, ValueError) as exc:
        return Result("prometheus", False, f"{url}: {type(exc).__name__}",
                      "start Prometheus or fix extract.prometheus_url")


def _kafka(cfg: HealthpipeConfig, create: bool) -> Result:
    from healthpipe.common.kafka import admin_client, describe_topic_configs, ensure_topics, topic_specs

    try:
        if create:
            ensure_topics(cfg)
        admin = admin_client(cfg.kafka)
        metadata = admin.list_topics(timeout=10)
        topics = metadata.topics
    except Exception as exc:
        return Result("kafka", False, f"{cfg.kafka.bootstrap_servers}: {exc}",
                      "start Kafka or fix kafka.bootstrap_servers / kafka.client_config")
    problems = []
    specs = topic_specs(cfg)
    for spec in specs:
        if spec.name not in topics:
            problems.append(f"{spec.name} missing")
        elif len(topics[spec.name].partitions) < spec.partitions:
            problems.append(f"{spec.name} has {len(topics[spec.name].partitions)} partitions < {spec.partitions}")
    if not problems:
        configs = describe_topic_configs(cfg, [s.name for s in specs])
        for spec in specs:
            policy = configs[spec.name].get("cleanup.policy")
            if policy != spec.config.get("cleanup.policy", "delete"):
                problems.append(f"{spec.name} cleanup.policy={policy}")
    detail = "; ".join(problems) or ", ".join(s.name for s in specs)
    brokers = len(metadata.brokers)
    if not problems and brokers > 1 and cfg.kafka.replication_factor == 1:
        detail += (f" (WARNING: replication_factor 1 on a {brokers}-broker cluster: one broker lost loses data; "
                   f"set kafka.replication_factor: 3)")
    return Result("kafka topics", not problems, detail,
                  "healthpipe check --create-topics (or create them with the settings in docs)")


def _influxdb(cfg: HealthpipeConfig) -> Result:
    s = cfg.load.influxdb
    headers = {"Authorization": f"Token {s.token.get_secret_value()}"}
    now_ns = time.time_ns()
    try:
        resp = requests.post(f"{s.url}/api/v2/write", params={"org": s.org, "bucket": s.bucket, "precision": "ns"},
                             data=f"healthpipe_check ok=1 {now_ns}", headers=headers, timeout=10, verify=s.tls_verify)
    except requests.RequestException as exc:
        return Result("influxdb", False, f"{s.url}: {type(exc).__name__}", "start InfluxDB or fix load.influxdb.url")
    if resp.status_code != 204:
        return Result("influxdb", False, f"write to bucket {s.bucket!r}: HTTP {resp.status_code}",
                      "check load.influxdb.token / org / bucket (the token needs write access to the bucket)")
    # Leave no trace of the check in the bucket.
    requests.post(f"{s.url}/api/v2/delete", params={"org": s.org, "bucket": s.bucket}, headers=headers, timeout=10,
                  verify=s.tls_verify,
                  json={"start": "1970-01-01T00:00:00Z", "stop": "2100-01-01T00:00:00Z",
                        "predicate": '_measurement="healthpipe_check"'})
    return Result("influxdb", True, f"{s.url}: write permission on bucket {s.bucket!r}")


def run(config_path: str | None, create_topics: bool = False, as_json: bool = False) -> int:
    """Print each check (a table, or with `as_json` the document in docs/cli.md); 0 if all passed, else 1."""
    results = [_python_deps(), _directories()]
    try:
        cfg = load_config(config_path)
        results.append(Result("config", True, f"{len(cfg.extract.queries)} queries"))
        checks: list[Callable[[], Result]] = [lambda: _prometheus(cfg), lambda: _kafka(cfg, create_topics),
                                              lambda: _influxdb(cfg)]
        results.extend(check() for check in checks)
    except ConfigError as exc:
        results.append(Result("config", False, str(exc).replace("\n", " "), "fix the key named above"))
    ok = all(r.ok for r in results)
    if as_json:
        print(json.dumps({"ok": ok, "checks": [asdict(r) for r in results]}, indent=2))
        return 0 if ok else 1
    width = max(len(r.name) for r in results)
    for r in results:
        line = f"{'OK  ' if r.ok else 'FAIL'}  {r.name:<{width}}  {r.detail}"
        print(line + (f"\n      {'':<{width}}  remedy: {r.remedy}" if not r.ok and r.remedy else ""))
    return 0 if ok else 1
