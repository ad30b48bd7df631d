"""`healthpipe check` (the plan's deploy/check script): is everything in place to run the pipeline?

Prints one OK/FAIL row per check with a remedy for each failure; exits non-zero if any check failed.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests
from confluent_kafka import KafkaError, KafkaException

from healthpipe.common.config import HealthpipeConfig, InfluxSettings, load_config
from healthpipe.common.errors import ConfigError, KafkaAccessDenied
from healthpipe.common.flux import flux_string
from healthpipe.common.principals import Role, influx_grants, kafka_grants

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
    from healthpipe.common.kafka import admin_client, describe_topic_configs, ensure_topics, metadata, topic_specs

    try:
        if create:
            ensure_topics(cfg)
        meta = metadata(admin_client(cfg.kafka), cfg.kafka, timeout=10)
        topics = meta.topics
    except KafkaAccessDenied as exc:
        return Result("kafka", False, str(exc), "fix kafka.security (docs/security.md)")
    except Exception as exc:
        return Result("kafka", False, f"{cfg.kafka.bootstrap_servers}: {exc}",
                      "start Kafka or fix kafka.bootstrap_servers / kafka.security")
    problems = []
    specs = topic_specs(cfg)
    for spec in specs:
        if spec.name not in topics:
            problems.append(f"{spec.name} missing")
        elif len(topics[spec.name].partitions) < spec.partitions:
            problems.append(f"{spec.name} has {len(topics[spec.name].partitions)} partitions < {spec.partitions}")
    hidden = False
    if not problems:
        try:
            configs = describe_topic_configs(cfg, [s.name for s in specs])
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_AUTHORIZATION_FAILED:
                raise
            hidden, configs = True, {}  # a least-privilege principal may not read topic settings (DESCRIBE_CONFIGS)
        for spec in specs if configs else []:
            policy = configs[spec.name].get("cleanup.policy")
            if policy != spec.config.get("cleanup.policy", "delete"):
                problems.append(f"{spec.name} cleanup.policy={policy}")
    detail = "; ".join(problems) or ", ".join(s.name for s in specs) + (
        f" (their settings are not visible to {cfg.kafka.security.principal})" if hidden else "")
    brokers = len(meta.brokers)
    if not problems and brokers > 1 and cfg.kafka.replication_factor == 1:
        detail += (f" (WARNING: replication_factor 1 on a {brokers}-broker cluster: one broker lost loses data; "
                   f"set kafka.replication_factor: 3)")
    return Result("kafka topics", not problems, detail,
                  "healthpipe check --create-topics (or create them with the settings in docs)")


def _influxdb(cfg: HealthpipeConfig, bucket: str | None = None) -> Result:
    s = cfg.load.influxdb
    if bucket:
        s = s.model_copy(update={"bucket": bucket})
    headers = {"Authorization": f"Token {s.token.get_secret_value()}"}
    now_ns = time.time_ns()
    try:
        resp = requests.post(f"{s.url}/api/v2/write", params={"org": s.org, "bucket": s.bucket, "precision": "ns"},
                             data=f"healthpipe_check ok=1 {now_ns}", headers=headers, timeout=10, verify=s.tls_verify)
    except requests.exceptions.SSLError as exc:
        return Result("influxdb", False, f"{s.url}: TLS failed: {exc}",
                      "set load.influxdb.ca_file to the CA that signed InfluxDB's certificate")
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


def _kafka_rights(cfg: HealthpipeConfig, role: Role) -> Result:
    """What the configured principal may do on each resource its role needs, as Kafka itself answers it (the
    authorized operations of KIP-430): nothing is written, no group is joined."""
    from confluent_kafka import TopicCollection

    from healthpipe.common.kafka import admin_client

    grants = [g for g in kafka_grants(cfg, role) if g.resource in ("TOPIC", "GROUP")]
    principal = cfg.kafka.security.principal
    if not grants:
        return Result("kafka rights", True, f"the {role} role uses no Kafka")
    admin = admin_client(cfg.kafka)
    allowed: dict[tuple[str, str], set[str]] = {}
    topics = sorted({g.name for g in grants if g.resource == "TOPIC"})
    # a prefixed grant is checked on one name under the prefix
    groups = sorted({g.name + ("check" if g.prefixed else "") for g in grants if g.resource == "GROUP"})
    deadline = time.monotonic() + 30
    while True:
        try:
            for name, fut in admin.describe_topics(TopicCollection(topics), include_authorized_operations=True).items():
                allowed[("TOPIC", name)] = _operations(fut)
            for name, fut in admin.describe_consumer_groups(groups, include_authorized_operations=True).items():
                allowed[("GROUP", name)] = _operations(fut)
            break
        except KafkaException as exc:
            # a group coordinator still loading (a broker just started) answers NOT_COORDINATOR for a while
            if (exc.args[0].retriable() or exc.args[0].code() in _COORDINATOR_MOVING) and time.monotonic() < deadline:
                time.sleep(1)
                continue
            return Result("kafka rights", False, f"{principal} at {cfg.kafka.bootstrap_servers}: {exc}",
                          "check kafka.security (username, password, ca_file) and the listener's protocol")
    lacking = [g for g in grants
               if g.operation not in allowed[(g.resource, g.name + ("check" if g.prefixed else ""))]]
    if lacking:
        return Result("kafka rights", False, "; ".join(f"{role} principal {principal} lacks {g}" for g in lacking),
                      "grant the ACLs listed for this role in docs/security.md")
    unseen = [str(g) for g in kafka_grants(cfg, role) if g.resource not in ("TOPIC", "GROUP")]
    return Result("kafka rights", True, f"{principal} has every ACL of the {role} role on topics and groups"
                  + (f" (not observable by the principal itself: {', '.join(unseen)})" if unseen else ""))


_COORDINATOR_MOVING = (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                       KafkaError.COORDINATOR_NOT_AVAILABLE)


def _operations(fut: Future) -> set[str]:
    """The operations a describe call says the principal may do; none when it may not even describe."""
    try:
        return {op.name for op in fut.result(30).authorized_operations or []}
    except KafkaException as exc:
        if exc.args[0].code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED):
            return set()
        raise


def _influx_rights(cfg: HealthpipeConfig, role: Role) -> Result:
    """Each InfluxDB permission of the role, tried with the configured token (a write is deleted again)."""
    s = cfg.load.influxdb
    lacking = []
    for grant in influx_grants(cfg, role):
        if grant.action == "write" and grant.bucket:
            ok = _influxdb(cfg, grant.bucket).ok
        elif grant.action == "read" and grant.bucket:
            flux = f"from(bucket: {flux_string(grant.bucket)}) |> range(start: -1m) |> limit(n: 1)"
            ok = _influx_request(s, "POST", "/api/v2/query", json={"query": flux}) == 200
        elif grant.action == "read" and grant.resource in _VISIBLE:
            # a list answers 200 even without the right, leaving out what the token may not see: look for one
            name = _VISIBLE[grant.resource](cfg)
            status, body = _influx_json(s, f"/api/v2/{grant.resource}", params={"name": name, "limit": 100})
            ok = status == 200 and any(item.get("name") == name for item in body.get(grant.resource, []))
        elif grant.action == "read":
            ok = _influx_request(s, "GET", f"/api/v2/{grant.resource}", params={"limit": 1}) == 200
        else:
            continue  # an org-wide write cannot be tried without making something
        if not ok:
            what = (f"bucket {grant.bucket}" if grant.bucket else f"{grant.resource} (it does not see "
                    f"{_VISIBLE[grant.resource](cfg)})" if grant.resource in _VISIBLE else f"all {grant.resource}")
            lacking.append(f"InfluxDB token cannot {grant.action} {what}")
    if lacking:
        return Result("influxdb rights", False, "; ".join(lacking),
                      f"give the {role} role's token the permissions listed in docs/security.md")
    return Result("influxdb rights", True, f"the token has every permission of the {role} role that can be tried"
                  if influx_grants(cfg, role) else f"the {role} role uses no InfluxDB")


# what a token with an org-wide read right must see in the list of that resource
_VISIBLE: dict[str, Callable[[HealthpipeConfig], str]] = {"orgs": lambda cfg: cfg.load.influxdb.org,
                                                          "buckets": lambda cfg: cfg.load.influxdb.bucket}


def _influx_json(s: InfluxSettings, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    try:
        answer = requests.get(f"{s.url}{path}", params={"org": s.org, **params}, timeout=10, verify=s.tls_verify,
                              headers={"Authorization": f"Token {s.token.get_secret_value()}"})
        return answer.status_code, answer.json() if answer.status_code == 200 else {}
    except (requests.RequestException, ValueError):
        return 0, {}


def _influx_request(s: InfluxSettings, method: str, path: str, **kwargs: Any) -> int:
    try:
        return requests.request(method, f"{s.url}{path}", params={"org": s.org, **kwargs.pop("params", {})},
                                headers={"Authorization": f"Token {s.token.get_secret_value()}"}, timeout=10,
                                verify=s.tls_verify, **kwargs).status_code
    except requests.RequestException:
        return 0


def run(config_path: str | None, create_topics: bool = False, as_json: bool = False, role: Role | None = None) -> int:
    """Print each check (a table, or with `as_json` the document in docs/cli.md); 0 if all passed, else 1.

    With a role: instead of the write test of the pipeline's one token, each credential is checked against what
    that role needs (healthpipe.common.principals), naming what is missing."""
    results = [_python_deps(), _directories()]
    try:
        cfg = load_config(config_path)
        results.append(Result("config", True, f"{len(cfg.extract.queries)} queries"))
        checks: list[Callable[[], Result]] = [lambda: _prometheus(cfg)]
        if role is None or kafka_grants(cfg, role):
            checks.append(lambda: _kafka(cfg, create_topics))
        results.extend(check() for check in checks)
        if role is None:
            results.append(_influxdb(cfg))
        else:  # rights only where the login worked (a refused login is the one thing to say)
            if results[-1].ok or not kafka_grants(cfg, role):
                results.append(_kafka_rights(cfg, role))
            results.append(_influx_rights(cfg, role))
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
