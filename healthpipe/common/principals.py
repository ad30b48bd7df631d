"""What each healthpipe process may do, and nothing more: the one list that the secured native stack grants, that
`healthpipe check --role` verifies, and that deploy/k8s's KafkaUsers must agree with (tests/unit/test_principals.py).

Roles, one principal each:
  producer  writes samples and watermarks in transactions (and reads the watermarks back on start)
  consumer  reads samples in its group, writes rejected ones to the dead-letter topic
  archive   reads samples in its own group
  reader    verify, export, features: reads topics and the groups' offsets, writes nothing
  tiers     `healthpipe tiers apply`: InfluxDB only (the warm buckets and their tasks)

Every role may DESCRIBE healthpipe's three topics: each process checks at start that they exist (a name and a
partition count reveal no data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from healthpipe.common.config import HealthpipeConfig

Role = Literal["producer", "consumer", "archive", "reader", "tiers"]
ROLES: tuple[Role, ...] = ("producer", "consumer", "archive", "reader", "tiers")
# The native stack's principal of each role: User:hp-<role>
USERNAMES: dict[Role, str] = {r: f"hp-{r}" for r in ROLES}


@dataclass(frozen=True)
class KafkaGrant:
    """One ALLOW ACL: `operation` on a resource (TOPIC, GROUP, TRANSACTIONAL_ID, CLUSTER), by name or prefix."""

    resource: Literal["TOPIC", "GROUP", "TRANSACTIONAL_ID", "CLUSTER"]
    name: str
    operation: Literal["READ", "WRITE", "DESCRIBE", "IDEMPOTENT_WRITE"]
    prefixed: bool = False

    def __str__(self) -> str:
        what = "cluster" if self.resource == "CLUSTER" else f"{self.resource.lower().replace('_', ' ')} {self.name}"
        return f"{self.operation} on {what}{' (prefix)' if self.prefixed else ''}"


@dataclass(frozen=True)
class InfluxGrant:
    """One InfluxDB permission: read or write on a resource type, limited to one bucket when `bucket` is set."""

    action: Literal["read", "write"]
    resource: Literal["buckets", "tasks", "orgs"]
    bucket: str | None = None

    def __str__(self) -> str:
        return f"{self.action} {'bucket ' + self.bucket if self.bucket else 'all ' + self.resource}"


def kafka_grants(cfg: HealthpipeConfig, role: Role) -> list[KafkaGrant]:
    k = cfg.kafka
    describe = [KafkaGrant("TOPIC", t, "DESCRIBE") for t in (k.topic, k.watermark_topic, k.dead_letter_topic)]
    # Readers by assignment (watermarks on start, verify, export) use throw-away group ids: healthpipe-reader-*
    assigned_reader = KafkaGrant("GROUP", "healthpipe-reader-", "READ", prefixed=True)
    grants: dict[Role, list[KafkaGrant]] = {
        "producer": [KafkaGrant("TOPIC", k.topic, "WRITE"), KafkaGrant("TOPIC", k.watermark_topic, "WRITE"),
                     KafkaGrant("TOPIC", k.watermark_topic, "READ"), assigned_reader,
                     # its transactional id, and the ids verify --repair and backfills derive from it
                     KafkaGrant("TRANSACTIONAL_ID", cfg.producer.transactional_id, "WRITE", prefixed=True),
                     KafkaGrant("CLUSTER", "kafka-cluster", "IDEMPOTENT_WRITE")],
        "consumer": [KafkaGrant("TOPIC", k.topic, "READ"), KafkaGrant("GROUP", k.group_id, "READ"),
                     KafkaGrant("TOPIC", k.dead_letter_topic, "WRITE"),
                     KafkaGrant("CLUSTER", "kafka-cluster", "IDEMPOTENT_WRITE")],
        "archive": [KafkaGrant("TOPIC", k.topic, "READ"), KafkaGrant("GROUP", cfg.archive.group_id, "READ")],
        "reader": [KafkaGrant("TOPIC", k.topic, "READ"), KafkaGrant("TOPIC", k.watermark_topic, "READ"),
                   KafkaGrant("TOPIC", k.dead_letter_topic, "READ"), assigned_reader,
                   KafkaGrant("GROUP", k.group_id, "DESCRIBE"), KafkaGrant("GROUP", cfg.archive.group_id, "DESCRIBE")],
        "tiers": [],
    }
    return describe + grants[role] if grants[role] else []


def influx_grants(cfg: HealthpipeConfig, role: Role) -> list[InfluxGrant]:
    hot = cfg.load.influxdb.bucket
    warm = [w.bucket for w in cfg.tiers.warm]
    grants: dict[Role, list[InfluxGrant]] = {
        "producer": [],
        "consumer": [InfluxGrant("write", "buckets", hot), InfluxGrant("read", "buckets", hot)],
        "archive": [],
        "reader": [InfluxGrant("read", "buckets", b) for b in [hot, *warm]],
        # creates the warm buckets and their tasks; a task runs with its creator's rights (read hot, write warm)
        "tiers": [InfluxGrant("read", "buckets"), InfluxGrant("write", "buckets"), InfluxGrant("read", "tasks"),
                  InfluxGrant("write", "tasks"), InfluxGrant("read", "orgs")],
    }
    return grants[role]
