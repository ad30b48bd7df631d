"""Where the real services are: the running native stack, or the ones HEALTHPIPE_* variables name.

Integration tests never mock a service. When no service is reachable they skip locally, and fail
loudly under CI=true: a green CI that tested nothing is worse than a red one.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests

from healthpipe.common.config import HealthpipeConfig, load_config

STACK_ENV = Path(__file__).resolve().parents[2] / ".stack" / "stack.env"
# The caller's HEALTHPIPE_* variables, read once at import: they say where the services are (to test against
# your own), and nothing else; tests run with them removed from the environment (tests/conftest.py).
CALLER_ENV = {k: v for k, v in os.environ.items() if k.startswith("HEALTHPIPE_")}


@dataclass
class Services:
    kafka_bootstrap: str
    prometheus_url: str
    influx_url: str
    influx_token: str
    influx_org: str
    influx_bucket: str
    native: bool
    s3: dict[str, str] | None = None  # archive.s3 settings of the stack's S3 server, when it runs
    # kafka.security of the secured stack (its operator, hp-admin) and the CA InfluxDB's certificate is signed by
    kafka_security: dict[str, str] = field(default_factory=dict)
    influx_ca_file: str | None = None
    _closers: list = field(default_factory=list, repr=False)

    def config(self, **overrides) -> HealthpipeConfig:
        """A config pointing at these services, with topic and group names unique to one test."""
        suffix = uuid.uuid4().hex[:8]
        kafka = {"bootstrap_servers": self.kafka_bootstrap, "topic": f"hm-{suffix}",
                 "dead_letter_topic": f"hm-{suffix}-dlq", "watermark_topic": f"hm-{suffix}-wm",
                 "group_id": f"hp-{suffix}", "security": self.kafka_security, **overrides.pop("kafka", {})}
        influx = {"url": self.influx_url, "token": self.influx_token, "org": self.influx_org,
                  "bucket": self.influx_bucket, "ca_file": self.influx_ca_file, **overrides.pop("influxdb", {})}
        extract = {"prometheus_url": self.prometheus_url, **overrides.pop("extract", {})}
        producer = {"transactional_id": f"hp-producer-{suffix}", "metrics_port": 0,
                    **overrides.pop("producer", {})}
        consumer = {"metrics_port": 0, **overrides.pop("consumer", {})}
        archive = overrides.pop("archive", {})
        if archive or self.s3:
            overrides["archive"] = {"metrics_port": 0, "group_id": f"hp-archive-{suffix}", **archive}
        # Blind to HEALTHPIPE_* in the caller's shell (a sourced .stack/stack.env, say): the test decides.
        return load_config(path=os.devnull, environment=False, kafka=kafka, load={"influxdb": influx},
                           extract=extract, producer=producer, consumer=consumer, **overrides)

    def close(self) -> None:
        for close in reversed(self._closers):
            close()


def _read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            env[k.strip()] = v.strip()
    return env


def _reachable(s: Services) -> str | None:
    """None if all three services answer, else what does not."""
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient(s.config().kafka.as_librdkafka_dict()).list_topics(timeout=5)
    except Exception as exc:
        return f"Kafka at {s.kafka_bootstrap}: {exc}"
    for name, url in (("Prometheus", f"{s.prometheus_url}/-/ready"), ("InfluxDB", f"{s.influx_url}/health")):
        try:
            requests.get(url, timeout=5, verify=s.influx_ca_file or True).raise_for_status()
        except requests.RequestException as exc:
            return f"{name} at {url}: {exc}"
    return None


def from_environment() -> Services | None:
    """The native stack's settings (.stack/stack.env), overridden by HEALTHPIPE_* variables."""
    env = _read_env_file(STACK_ENV) if STACK_ENV.exists() else {}
    env.update(CALLER_ENV)
    if "HEALTHPIPE_KAFKA__BOOTSTRAP_SERVERS" not in env:
        return None
    return Services(
        kafka_bootstrap=env["HEALTHPIPE_KAFKA__BOOTSTRAP_SERVERS"],
        prometheus_url=env.get("HEALTHPIPE_EXTRACT__PROMETHEUS_URL", "http://127.0.0.1:9090"),
        influx_url=env.get("HEALTHPIPE_LOAD__INFLUXDB__URL", "http://127.0.0.1:8086"),
        influx_token=env.get("HEALTHPIPE_LOAD__INFLUXDB__TOKEN", ""),
        influx_org=env.get("HEALTHPIPE_LOAD__INFLUXDB__ORG", "healthpipe"),
        influx_bucket=env.get("HEALTHPIPE_LOAD__INFLUXDB__BUCKET", "health_metrics"),
        native=STACK_ENV.exists(),
        s3=_s3(env),
        kafka_security={k.removeprefix(_SECURITY).lower(): v for k, v in env.items() if k.startswith(_SECURITY)},
        influx_ca_file=env.get("HEALTHPIPE_LOAD__INFLUXDB__CA_FILE"),
    )


_SECURITY = "HEALTHPIPE_KAFKA__SECURITY__"


def _s3(env: dict[str, str]) -> dict[str, str] | None:
    if "HEALTHPIPE_ARCHIVE__S3__ENDPOINT" not in env:
        return None
    return {key: env[f"HEALTHPIPE_ARCHIVE__S3__{key.upper()}"]
            for key in ("endpoint", "bucket", "access_key", "secret_key")}


def native_or_exit() -> Services:
    """For scripts (benchmarks): the running stack's settings, or exit naming the remedy."""
    services = from_environment()
    if services is None:
        raise SystemExit("no stack: run `make stack-up` first")
    return services


def discover() -> tuple[Services | None, str]:
    """The services to test against, or None and why not."""
    services = from_environment()
    if services is None:
        return None, "no native stack (.stack/stack.env) and no HEALTHPIPE_* settings; run `make stack-up`"
    problem = _reachable(services)
    if problem is not None:
        return None, f"the services are not reachable ({problem}); run `make stack-up`"
    return services, ""
