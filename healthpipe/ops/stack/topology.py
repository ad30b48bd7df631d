"""The stack's topology: which services run, in which order, under which names, and the settings a process
needs to reach them (`stack_env`, written to .stack/stack.env)."""

from __future__ import annotations

import sys
from pathlib import Path

from healthpipe.common.errors import StackError
from healthpipe.common.principals import Role
from healthpipe.ops.stack.influxdb import influx_service, influx_token, influx_url
from healthpipe.ops.stack.kafka import bootstrap_servers, kafka_brokers, kafka_services
from healthpipe.ops.stack.paths import INFLUX, PORTS, ROOT, S3_BUCKET, STACK_DIR
from healthpipe.ops.stack.prometheus import prometheus_service
from healthpipe.ops.stack.prometheus3 import PROMETHEUS3
from healthpipe.ops.stack.s3 import S3, s3_credentials
from healthpipe.ops.stack.security import is_secure, operator_env, role_env, write_role_env_files
from healthpipe.ops.stack.supervise import Service, http_ok


def _base_services() -> list[Service]:
    return [
        influx_service(),
        prometheus_service(),
        Service("demo-app", command=lambda: [sys.executable, "-m", "healthpipe", "demo-app",
                                             "--host", "127.0.0.1", "--port", str(PORTS.demo_app)],
                ready=lambda: http_ok(f"http://127.0.0.1:{PORTS.demo_app}/metrics")),
    ]


def services(brokers: int | None = None, with_s3: bool | None = None,
             with_remote_write: bool | None = None) -> list[Service]:
    """The stack's services in start order (Kafka first, the optional ones last: the S3 server; the receiver and
    the Prometheus 3 that pushes to it)."""
    brokers = brokers or kafka_brokers()
    with_s3 = S3.pid() is not None if with_s3 is None else with_s3
    if with_remote_write is None:
        with_remote_write = PROMETHEUS3.pid() is not None
    return (kafka_services(brokers) + _base_services() + ([S3] if with_s3 else [])
            + ([RECEIVE, PROMETHEUS3] if with_remote_write else []))


def _pipeline_env(role: Role) -> dict[str, str]:
    env = {**stack_env(), "HEALTHPIPE_CONFIG": str(ROOT / "config" / "healthpipe.yaml")}
    return {**env, **role_env(role)} if is_secure() else env


# The pipeline itself, for `make up` without Docker: started after the stack, stopped before it.
PIPELINE: list[Service] = [
    Service("producer", command=lambda: [sys.executable, "-m", "healthpipe", "producer"],
            env=lambda: _pipeline_env("producer"),
            ready=lambda: http_ok(f"http://127.0.0.1:{PORTS.producer_metrics}/readyz")),
    Service("consumer", command=lambda: [sys.executable, "-m", "healthpipe", "consumer"],
            env=lambda: _pipeline_env("consumer"),
            ready=lambda: http_ok(f"http://127.0.0.1:{PORTS.consumer_metrics[0]}/readyz")),
    # the cold tier into data/archive (a local directory; docker-compose's writes to its S3 service)
    Service("archive", command=lambda: [sys.executable, "-m", "healthpipe", "archive"],
            env=lambda: {**_pipeline_env("archive"), "HEALTHPIPE_ARCHIVE__TARGET": str(ROOT / "data" / "archive")},
            ready=lambda: http_ok(f"http://127.0.0.1:{PORTS.archive_metrics}/readyz")),
    # online features (docs/ml.md), as the reader role on the secured stack
    Service("features", command=lambda: [sys.executable, "-m", "healthpipe", "features", "serve"],
            env=lambda: _pipeline_env("reader"),
            ready=lambda: http_ok(f"http://127.0.0.1:{PORTS.features}/readyz")),
]


# What Prometheus 3 pushes to (`--with remote-write`): the pipeline's topic, so `make up`'s consumer stores it.
# On the secured stack it runs as the producer's principal, whose rights (WRITE on the data topic, idempotence)
# are all it needs.
RECEIVE = Service("receive", command=lambda: [sys.executable, "-m", "healthpipe", "receive"],
                  env=lambda: _pipeline_env("producer"),
                  ready=lambda: http_ok(f"http://127.0.0.1:{PORTS.receive}/readyz"))


def service(name: str) -> Service:
    if name == "kafka" or name.startswith("kafka-") and name[6:].isdigit():
        return broker_node(1 if name == "kafka" else int(name[6:]))
    others = _base_services() + [S3, RECEIVE, PROMETHEUS3] + PIPELINE
    for s in others:
        if s.name == name:
            return s
    raise StackError(f"unknown service {name!r}; known: kafka, kafka-2, kafka-3, {', '.join(s.name for s in others)}")


def stack_env() -> dict[str, str]:
    env = {
        "HEALTHPIPE_KAFKA__BOOTSTRAP_SERVERS": bootstrap_servers(),
        "HEALTHPIPE_EXTRACT__PROMETHEUS_URL": f"http://127.0.0.1:{PORTS.prometheus}",
        "HEALTHPIPE_LOAD__INFLUXDB__URL": influx_url(),
        "HEALTHPIPE_LOAD__INFLUXDB__TOKEN": influx_token(),
        "HEALTHPIPE_LOAD__INFLUXDB__ORG": INFLUX.org,
        "HEALTHPIPE_LOAD__INFLUXDB__BUCKET": INFLUX.bucket,
    }
    if is_secure():
        env.update(operator_env())
    if kafka_brokers() >= 3:
        env["HEALTHPIPE_KAFKA__REPLICATION_FACTOR"] = "3"
    if S3.pid() is not None:
        access, secret = s3_credentials()
        env.update({"HEALTHPIPE_ARCHIVE__S3__ENDPOINT": f"http://127.0.0.1:{PORTS.s3}",
                    "HEALTHPIPE_ARCHIVE__S3__ACCESS_KEY": access, "HEALTHPIPE_ARCHIVE__S3__SECRET_KEY": secret,
                    "HEALTHPIPE_ARCHIVE__S3__BUCKET": S3_BUCKET})
    return env


def write_env_file() -> Path:
    path = STACK_DIR / "stack.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in stack_env().items()))
    path.chmod(0o600)
    if is_secure():
        write_role_env_files()
    return path


def broker_node(node: int) -> Service:
    if not 1 <= node <= kafka_brokers():
        raise StackError(f"no broker with node id {node}: the stack runs {kafka_brokers()} (ids 1-{kafka_brokers()})")
    return kafka_services(kafka_brokers())[node - 1]
