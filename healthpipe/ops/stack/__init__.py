"""The native stack: real Kafka, Prometheus, InfluxDB, the demo app (and on request an S3 server) as local
processes.

This machine has no Docker engine, so `healthpipe stack up` installs (once, cached under
~/.cache/healthpipe keyed by version) and starts each service from `scripts/stack/`, keeping its data,
pid and log under `.stack/`. `down` stops exactly the processes whose pids it recorded.

    healthpipe stack up [--kafka-brokers 1|3] [--with s3] [--with remote-write]
    healthpipe stack kill-broker N / start-broker N      (N = the broker's node id: 1, 2, 3)

Ports, org and bucket come from one place: `paths.PORTS` and the config defaults (healthpipe/common/config.py).
One module per job: `paths` (versions, folders, ports), `supervise` (start/stop/kill a process), one per service
(`kafka`, `influxdb`, `prometheus`, `s3`), `topology` (which services, `stack_env`), `pipeline` (`make up` without
Docker), `compose` (with Docker). This module is the stack's entry points: up, down, status.
"""

from __future__ import annotations

import time

from healthpipe.common.errors import StackError
from healthpipe.ops.stack.compose import compose_down, compose_up, docker_engine_runs
from healthpipe.ops.stack.influxdb import influx_service, influx_token
from healthpipe.ops.stack.kafka import (
    bootstrap_servers,
    brokers_file,
    client_security,
    kafka_brokers,
    kafka_services,
    quiet_logger,
)
from healthpipe.ops.stack.paths import CACHE, INFLUXDB_VERSION, KAFKA_VERSION, MAX_BROKERS, PORTS, ROOT, STACK_DIR
from healthpipe.ops.stack.pipeline import pipeline_down, pipeline_up
from healthpipe.ops.stack.prometheus import render_prometheus_config
from healthpipe.ops.stack.prometheus3 import PROMETHEUS3
from healthpipe.ops.stack.s3 import S3, s3_credentials
from healthpipe.ops.stack.security import is_secure, provision_kafka, set_secure
from healthpipe.ops.stack.supervise import Service, kill, start, stop
from healthpipe.ops.stack.topology import PIPELINE, broker_node, service, services, stack_env, write_env_file

__all__ = ["CACHE", "PIPELINE", "INFLUXDB_VERSION", "KAFKA_VERSION", "PORTS", "ROOT", "STACK_DIR", "S3", "Service",
           "bootstrap_servers", "broker_node", "compose_down", "compose_up", "docker_engine_runs", "down",
           "influx_token", "kafka_brokers", "kill", "pipeline_down", "pipeline_up", "render_prometheus_config",
           "s3_credentials", "service", "service_states", "services", "stack_env", "start", "status", "stop",
           "under_replicated_partitions", "up", "write_env_file"]


def _switch(brokers: int, secure: bool) -> None:
    """Stop a Kafka of another size or security than asked for (its data stays, in its own folder), and an InfluxDB
    that serves http where https is asked for or the other way round (the same data either way)."""
    running = kafka_brokers()
    if running != brokers or is_secure() != secure:
        for svc in reversed(kafka_services(running)):
            stop(svc)
    if is_secure() != secure:
        for svc in reversed(PIPELINE):  # they hold the other stack's credentials
            stop(svc)
        stop(influx_service())
    set_secure(secure)
    brokers_file().parent.mkdir(parents=True, exist_ok=True)
    brokers_file().write_text(str(brokers))


def up(names: list[str] | None = None, brokers: int = 1, with_s3: bool = False, secure: bool = False,
       with_remote_write: bool = False) -> None:
    """Start the stack (or the services named): `brokers` Kafka nodes; `secure`: SASL_SSL + ACLs, InfluxDB over
    https with a token per role (healthpipe.ops.stack.security)."""
    if brokers not in (1, MAX_BROKERS):
        raise StackError(f"--kafka-brokers must be 1 or {MAX_BROKERS}, not {brokers}")
    t0 = time.monotonic()
    if names is None:
        _switch(brokers, secure)
    elif any(n.startswith("kafka") for n in names):  # a broker restarted by a test: the stack as it is
        brokers = kafka_brokers()
    wanted = services(brokers, with_s3=with_s3 or S3.pid() is not None or bool(names and "s3" in names),
                      with_remote_write=with_remote_write or PROMETHEUS3.pid() is not None
                      or bool(names and {"receive", "prometheus3"} & set(names)))
    kafka = [s for s in wanted if s.name.startswith("kafka") and (names is None or s.name in names or "kafka" in names)]
    # The nodes of a cluster wait for each other's votes: start them all, then wait for each.
    for svc in kafka:
        start(svc, wait=False)
    for svc in kafka:
        start(svc)
    if is_secure() and kafka:
        provision_kafka(bootstrap_servers(brokers))
    for svc in wanted:
        if not svc.name.startswith("kafka") and (names is None or svc.name in names):
            start(svc)
    env = write_env_file()
    print(f"stack up in {time.monotonic() - t0:.1f}s ({brokers} Kafka broker{'s' if brokers > 1 else ''}"
          f"{', S3' if S3.pid() else ''}{', Prometheus 3 -> receive' if PROMETHEUS3.pid() else ''}"
          f"{', secured: SASL_SSL, ACLs, InfluxDB https' if is_secure() else ''}); "
          f"connection settings in {env}", flush=True)


def down(names: list[str] | None = None) -> None:
    for svc in reversed(services(with_s3=True, with_remote_write=True)):
        if names is None or svc.name in names:
            stop(svc)


def under_replicated_partitions() -> int | None:
    """Partitions whose in-sync replicas are fewer than their replicas, across all topics; None if unreachable."""
    from confluent_kafka.admin import AdminClient

    try:
        meta = AdminClient({"bootstrap.servers": bootstrap_servers(), "log_level": 0,
                            "logger": quiet_logger(), **client_security()}).list_topics(timeout=5)
    except Exception:
        return None
    return sum(1 for t in meta.topics.values() for p in t.partitions.values() if len(p.isrs) < len(p.replicas))


def service_states() -> list[dict]:
    """Each service of the stack (and each pipeline process running): name, state, pid, log."""
    rows = []
    for svc in services() + [s for s in PIPELINE if s.pid() is not None]:
        pid = svc.pid()
        state = "healthy" if pid is not None and svc.ready() else ("starting/unhealthy" if pid else "stopped")
        rows.append({"name": svc.name, "state": state, "pid": pid, "log": str(svc.log_file)})
    return rows


def status() -> bool:
    rows = service_states()
    width = [max(len(str(r[k] or "-")) for r in rows) for k in ("name", "state", "pid")]
    for r in rows:
        print(f"{r['name']:<{width[0]}}  {r['state']:<{width[1]}}  pid {r['pid'] or '-':<{width[2]}}  {r['log']}")
    if kafka_brokers() > 1:
        urp = under_replicated_partitions()
        print(f"kafka cluster: {kafka_brokers()} brokers, under-replicated partitions: "
              f"{'unknown (unreachable)' if urp is None else urp}")
    return all(r["state"] == "healthy" for r in rows)
