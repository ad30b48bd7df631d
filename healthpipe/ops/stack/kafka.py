"""Kafka on the native stack: 1 node, or a 3-node KRaft cluster (combined broker + controller roles), from the
jars scripts/stack/install-kafka.sh caches."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any

from healthpipe.ops.stack.paths import CACHE, KAFKA_VERSION, PORTS, STACK_DIR
from healthpipe.ops.stack.security import ADMIN, MECHANISM, certs, is_secure, kafka_client_security, password
from healthpipe.ops.stack.supervise import Service, run_script


def brokers_file() -> Path:
    return STACK_DIR / "kafka" / "brokers"


def kafka_brokers() -> int:
    """How many brokers the stack runs (or last ran): 1 or 3."""
    try:
        return int(brokers_file().read_text())
    except (OSError, ValueError):
        return 1


def bootstrap_servers(brokers: int | None = None) -> str:
    return ",".join(f"127.0.0.1:{p}" for p in PORTS.kafka[:brokers or kafka_brokers()])


def _kafka_dir(node: int, brokers: int) -> Path:
    # A cluster of another size is another cluster (its own id and quorum): keep their data apart. So is a secured
    # one: its metadata holds the ACLs and SCRAM credentials.
    return STACK_DIR / "kafka" / f"{brokers}-broker{'-secure' if is_secure() else ''}" / f"node-{node}"


def client_security() -> dict[str, str]:
    """The stack's own librdkafka settings (probes, admin calls): hp-admin over SASL_SSL on the secured stack."""
    return kafka_client_security(ADMIN) if is_secure() else {}


def _listeners(node: int) -> str:
    port, controller = PORTS.kafka[node - 1], PORTS.kafka_controller[node - 1]
    if not is_secure():
        return f"""\
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
"""
    tls, pw = certs(), password(ADMIN)
    plain = (f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{ADMIN}" '
             f'password="{pw}" user_{ADMIN}="{pw}";')
    return f"""\
listeners=CLIENT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=CLIENT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=CLIENT
listener.security.protocol.map=CONTROLLER:SASL_SSL,CLIENT:SASL_SSL
# clients: SCRAM-SHA-512 (credentials in the cluster's metadata); the brokers themselves: PLAIN as {ADMIN}
listener.name.client.sasl.enabled.mechanisms={MECHANISM},PLAIN
listener.name.client.plain.sasl.jaas.config={plain}
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
sasl.mechanism.inter.broker.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config={plain}
sasl.mechanism.controller.protocol=PLAIN
ssl.keystore.type=PEM
ssl.keystore.location={tls.server_pem}
ssl.truststore.type=PEM
ssl.truststore.location={tls.ca}
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:{ADMIN}
allow.everyone.if.no.acl.found=false
"""


def broker_name(node: int) -> str:
    """`kafka` is node 1 (the single broker); the cluster adds `kafka-2` and `kafka-3`."""
    return "kafka" if node == 1 else f"kafka-{node}"


def _kafka_properties(node: int, brokers: int) -> str:
    d = _kafka_dir(node, brokers)
    voters = ",".join(f"{n}@127.0.0.1:{PORTS.kafka_controller[n - 1]}" for n in range(1, brokers + 1))
    rf, min_isr = (3, 2) if brokers >= 3 else (1, 1)
    return f"""\
process.roles=broker,controller
node.id={node}
controller.quorum.voters={voters}
{_listeners(node)}log.dirs={d / "data"}
num.partitions=6
auto.create.topics.enable=false
# The internal topics hold transactions and group offsets: on a cluster they must survive a broker.
offsets.topic.replication.factor={rf}
offsets.topic.num.partitions=6
transaction.state.log.replication.factor={rf}
transaction.state.log.min.isr={min_isr}
transaction.state.log.num.partitions=6
min.insync.replicas={min_isr}
# An unclean election can drop transaction markers and stall read_committed consumers.
unclean.leader.election.enable=false
default.replication.factor={rf}
group.initial.rebalance.delay.ms=0
log.flush.interval.messages=9223372036854775807
# Enforce topic retention within seconds (Kafka checks every 5 minutes by default): the retention-overrun
# scenario gives a topic a few seconds of retention. Topics with the default 7 days are not affected.
log.retention.check.interval.ms=2000
# Two cores for everything: small thread pools per broker.
num.network.threads={2 if brokers > 1 else 3}
num.io.threads={2 if brokers > 1 else 8}
"""


_LOG4J = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
"""


def _kafka_prepare(node: int, brokers: int) -> None:
    run_script("install-kafka.sh", KAFKA_VERSION=KAFKA_VERSION)
    d = _kafka_dir(node, brokers)
    (d / "data").mkdir(parents=True, exist_ok=True)
    (d / "server.properties").write_text(_kafka_properties(node, brokers))
    (d / "server.properties").chmod(0o600)  # the secured stack's broker password is in it
    (d / "log4j.properties").write_text(_LOG4J)
    if not (d / "data" / "meta.properties").exists():
        cluster_id = f"healthpipe-{'secure' if is_secure() else 'native'}-{brokers}b"  # the same for every node
        subprocess.run(_java(node, brokers, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                             "-c", str(d / "server.properties"), "--ignore-formatted"),
                       check=True, stdout=subprocess.DEVNULL)


def _java(node: int, brokers: int, main: str, *args: str) -> list[str]:
    lib = CACHE / f"kafka-{KAFKA_VERSION}" / "lib" / "*"
    heap = "512m" if brokers > 1 else "768m"  # three JVMs beside InfluxDB and Prometheus
    return ["java", "-Xms256m", f"-Xmx{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{_kafka_dir(node, brokers) / 'log4j.properties'}",
            "-cp", str(lib), main, *args]


def _kafka_ready(node: int, brokers: int) -> bool:
    """This broker answers metadata, and (on a cluster) reports itself among the registered brokers."""
    from confluent_kafka.admin import AdminClient

    try:
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{PORTS.kafka[node - 1]}", "log_level": 0,
                             "logger": quiet_logger(), **client_security()})
        meta = admin.list_topics(timeout=2)
        return node in meta.brokers
    except Exception:
        return False


def quiet_logger() -> Any:  # a Logger: librdkafka logs connection refusals while the broker starts
    log = logging.getLogger("stack.kafka.probe")
    log.setLevel(logging.CRITICAL)
    return log


def _kafka_service(node: int, brokers: int) -> Service:
    properties = str(_kafka_dir(node, brokers) / "server.properties")
    return Service(broker_name(node), command=lambda: _java(node, brokers, "kafka.Kafka", properties),
                   ready=lambda: _kafka_ready(node, brokers), prepare=lambda: _kafka_prepare(node, brokers),
                   start_timeout=120)


def kafka_services(brokers: int) -> list[Service]:
    return [_kafka_service(n, brokers) for n in range(1, brokers + 1)]
