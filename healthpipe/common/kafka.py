"""Kafka client factories and topic management: the one place that knows librdkafka's settings."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ClusterMetadata, ConfigResource, NewTopic

from healthpipe.common.config import HealthpipeConfig, KafkaSettings
from healthpipe.common.errors import ConfigError, Fatal, KafkaAccessDenied, Retryable

log = logging.getLogger(__name__)
_LIBRDKAFKA_LOG = logging.getLogger("librdkafka")


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def min_insync_replicas(replication_factor: int) -> int:
    """With 3 replicas, a write is acknowledged by 2 (acks=all): one broker may die without losing it, and
    with two down the producer blocks rather than write to a single copy."""
    return max(1, min(2, replication_factor - 1))


def topic_specs(cfg: HealthpipeConfig) -> list[TopicSpec]:
    """The three topics healthpipe needs, with the settings it relies on."""
    k = cfg.kafka
    retention = str(k.retention_ms)
    safety = {"min.insync.replicas": str(min_insync_replicas(k.replication_factor)),
              # an unclean election can lose acknowledged records and transaction markers
              "unclean.leader.election.enable": "false"}
    return [
        TopicSpec(k.topic, k.partitions, {"retention.ms": retention, "cleanup.policy": "delete",
                                          "max.message.bytes": str(max(cfg.producer.max_message_bytes * 2,
                                                                       1_048_588)), **safety}),
        TopicSpec(k.dead_letter_topic, min(k.partitions, 3), {"retention.ms": retention,
                                                              "max.message.bytes": "10485760", **safety}),
        # One partition, compacted: the latest watermark per query is all that matters.
        TopicSpec(k.watermark_topic, 1, {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000", **safety}),
    ]


def fail_if_refused(k: KafkaSettings, err: KafkaError) -> None:
    """Raise KafkaAccessDenied for a refused login or an untrusted certificate: librdkafka itself only logs those
    and reconnects, forever. Called from an error_cb, confluent-kafka raises it from the next poll/consume/flush."""
    if err.code() == KafkaError._AUTHENTICATION:
        raise KafkaAccessDenied(
            f"Kafka at {k.bootstrap_servers} refused {k.security.principal} on its {k.security.protocol} "
            f"listener ({err.str()}): check kafka.security.username and password (or password_file)")
    if err.code() == KafkaError._SSL:
        raise KafkaAccessDenied(
            f"TLS with Kafka at {k.bootstrap_servers} failed ({err.str()}): is kafka.security.ca_file the CA "
            f"that signed the brokers' certificates, and kafka.security.protocol the listener's?")


def _refused(k: KafkaSettings) -> Callable[[KafkaError], None]:
    def on_error(err: KafkaError) -> None:
        fail_if_refused(k, err)
        log.warning("kafka_client_error code=%s error=%s", err.name(), err.str())

    return on_error


def client_config(k: KafkaSettings) -> dict[str, Any]:
    """librdkafka settings every healthpipe client starts from: the connection, failing fast when refused, and
    librdkafka's own log lines through healthpipe's logging (its format, secrets scrubbed) instead of raw stderr."""
    return {**k.as_librdkafka_dict(), "error_cb": _refused(k), "logger": _LIBRDKAFKA_LOG}


def admin_client(k: KafkaSettings) -> AdminClient:
    # Asking for a topic by name never creates it: an admin client is a producer to librdkafka, and a producer's
    # metadata request may create a topic on a broker that allows it, with the broker's defaults.
    return AdminClient({**client_config(k), "allow.auto.create.topics": False})


def metadata(admin: AdminClient, k: KafkaSettings, topic: str | None = None, timeout: float = 30) -> ClusterMetadata:
    """The cluster's metadata (of `topic` only, if given). KafkaAccessDenied as soon as the login or TLS is refused
    (an admin client says why only when polled, so it is asked in 1 s slices); Retryable if unreachable."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return admin.list_topics(topic=topic, timeout=min(1.0, max(0.1, deadline - time.monotonic())))
        except KafkaException as exc:
            admin.poll(0)  # raises KafkaAccessDenied from the error_cb when that was the cause
            if time.monotonic() >= deadline:
                raise Retryable(f"Kafka at {k.bootstrap_servers} is not reachable: {exc}") from None


def ensure_topics(cfg: HealthpipeConfig, timeout: float = 30) -> list[str]:
    """Create whichever of healthpipe's topics are missing; return the names created."""
    # Each of our topics by name: the whole cluster's metadata (every topic's partitions) can be large, and every
    # process start asks this
    admin = admin_client(cfg.kafka)
    missing, brokers = [], 0
    for spec in topic_specs(cfg):
        meta = metadata(admin, cfg.kafka, spec.name, timeout)
        brokers = len(meta.brokers)
        found = meta.topics.get(spec.name)
        if found is None or found.error is not None:
            missing.append(spec)
    if not missing:
        return []
    check_replication(cfg, brokers)
    futures = admin.create_topics([NewTopic(s.name, s.partitions, cfg.kafka.replication_factor, config=s.config)
                                   for s in missing], operation_timeout=timeout)
    created = []
    for name, fut in futures.items():
        try:
            fut.result(timeout)
            created.append(name)
            log.info("topic_created topic=%s", name)
        except KafkaException as exc:
            code = exc.args[0].code()
            if code == KafkaError.TOPIC_AUTHORIZATION_FAILED and _appears(admin, cfg.kafka, name, timeout):
                continue  # it exists: a principal that may not create topics was shown old metadata (a cluster)
            if code == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                raise Fatal(f"topic {name} is missing and {cfg.kafka.security.principal} may not create it: an "
                            f"operator creates it (`healthpipe check --create-topics` with an admin's "
                            f"credentials)") from None
            if code != KafkaError.TOPIC_ALREADY_EXISTS:  # that one: another process won the race
                raise Fatal(f"cannot create topic {name}: {exc}") from None
    return created


def _appears(admin: AdminClient, k: KafkaSettings, topic: str, timeout: float) -> bool:
    """Whether `topic` shows in the metadata within `timeout` s (a new topic reaches every broker in a moment)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = metadata(admin, k, topic, timeout).topics.get(topic)
        if found is not None and found.error is None:
            return True
        time.sleep(0.5)
    return False


def check_replication(cfg: HealthpipeConfig, brokers: int) -> None:
    """ConfigError when the topics could not be created as configured: more replicas than brokers."""
    if cfg.kafka.replication_factor > brokers:
        raise ConfigError(f"kafka.replication_factor={cfg.kafka.replication_factor} but the cluster at "
                          f"{cfg.kafka.bootstrap_servers} has {brokers} broker{'s' if brokers != 1 else ''} up; "
                          f"set it to at most that (or start the missing brokers) before the topics are created")


def describe_topic_configs(cfg: HealthpipeConfig, names: list[str]) -> dict[str, dict[str, str]]:
    admin = admin_client(cfg.kafka)
    futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, n) for n in names])
    return {res.name: {k: v.value for k, v in fut.result(30).items()} for res, fut in futures.items()}


def transactional_producer(cfg: HealthpipeConfig, transactional_id: str | None = None) -> Producer:
    return Producer({
        **client_config(cfg.kafka),
        "transactional.id": transactional_id or cfg.producer.transactional_id,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "zstd",
        "linger.ms": 20,
        "message.max.bytes": max(cfg.producer.max_message_bytes * 2, 1_000_000),
        "transaction.timeout.ms": int(cfg.producer.transaction_timeout_seconds * 1000),
        # librdkafka would make it the transaction timeout: a delivery Kafka does not take fails after a minute
        "message.timeout.ms": min(60_000, int(cfg.producer.transaction_timeout_seconds * 1000)),
    })


def plain_producer(cfg: HealthpipeConfig) -> Producer:
    """Idempotent, acks=all; for dead letters, where each delivery is checked before a commit."""
    return Producer({**client_config(cfg.kafka), "enable.idempotence": True, "acks": "all",
                     "compression.type": "zstd", "linger.ms": 5})


def group_consumer(cfg: HealthpipeConfig, group_id: str | None = None, **extra: object) -> Consumer:
    return Consumer({
        **client_config(cfg.kafka),
        "group.id": group_id or cfg.kafka.group_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "max.poll.interval.ms": cfg.consumer.max_poll_interval_ms,
        # librdkafka prefetches up to 64 MB per client by default; a few MB keep a replica's RSS flat
        # under a large backlog without slowing it down (a batch is ~5,000 samples).
        "queued.max.messages.kbytes": 8192,
        # Heartbeats run on librdkafka's own thread, so a short session only costs when a member dies:
        # its partitions move after this long instead of Kafka's default 45 s.
        "session.timeout.ms": cfg.consumer.session_timeout_ms,
        **extra,
    })


def reader(cfg: HealthpipeConfig, group_id: str | None = None, committed_only: bool = True,
           extra: dict[str, object] | None = None) -> Consumer:
    """A consumer for reading partitions by assignment (watermarks, replay, verify, tests); it never commits.

    librdkafka requires a group id; a throw-away one keeps it from touching any real group's offsets.
    """
    return Consumer({
        **client_config(cfg.kafka),
        "group.id": group_id or f"healthpipe-reader-{uuid.uuid4().hex[:8]}",
        "isolation.level": "read_committed" if committed_only else "read_uncommitted",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        **(extra or {}),
    })


def partitions_of(consumer: Consumer, topic: str, timeout: float = 30) -> list[int]:
    """The partition ids of `topic`; Fatal naming it when it does not exist."""
    meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None:
        raise Fatal(f"Kafka topic {topic!r} not found ({meta.error if meta else 'no metadata'}); "
                    f"create it with `healthpipe check --create-topics`")
    return sorted(meta.partitions)


def end_offsets(consumer: Consumer, topic: str, partitions: list[int], timeout: float = 30) -> dict[int, int]:
    """The high watermark (next offset to be written) of each partition; through a read_committed consumer, the
    last stable offset instead, which stays behind an open transaction, and behind a committed one until the
    broker has written its markers (just after the commit returns)."""
    return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1] for p in partitions}


def offsets_at(consumer: Consumer, topic: str, partitions: list[int], ts_ms: int,
               timeout: float = 30) -> dict[int, int]:
    """The first offset whose record timestamp is at or after ts_ms, per partition (the end where none is)."""
    found = consumer.offsets_for_times([TopicPartition(topic, p, ts_ms) for p in partitions], timeout=timeout)
    ends = end_offsets(consumer, topic, partitions, timeout)
    return {tp.partition: tp.offset if tp.offset >= 0 else ends[tp.partition] for tp in found}


def read_to_end(consumer: Consumer, topic: str, start: dict[int, int], end: dict[int, int] | None = None,
                timeout: float = 120, batch: int = 500) -> Iterator[Message]:
    """Every message of `topic` from `start` (offset per partition) up to `end` (exclusive; default: the end
    when reading began), in offset order per partition. Raises TimeoutError if that takes over `timeout` s.

    A partition is done when its position reaches `end`. Under read_committed the last offsets may be
    transaction markers, which are never returned, and right after a commit the markers may not be written
    yet (the log's stable offset lags): so reaching the end is checked by position, not by seeing a message.
    """
    partitions = sorted(start)
    stop = end if end is not None else end_offsets(consumer, topic, partitions)
    pending = {p for p in partitions if start[p] < stop[p]}
    if not pending:
        return
    consumer.assign([TopicPartition(topic, p, start[p]) for p in sorted(pending)])
    deadline = time.monotonic() + timeout
    at_end: set[int] = set()  # partitions that reported EOF since we last checked their position
    try:
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: partitions {sorted(pending)} not read to offsets "
                                   f"{ {p: stop[p] for p in pending} } in {timeout:.0f}s")
            for msg in consumer.consume(batch, 0.5):
                err, p, offset = msg.error(), msg.partition() or 0, msg.offset() or 0
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(p)
                        continue
                    if err.fatal() or err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                        raise KafkaException(err)
                    continue  # transient (a broker restarting): librdkafka retries by itself
                if p not in pending or offset >= stop[p]:
                    pending.discard(p)
                    continue
                if offset >= stop[p] - 1:
                    pending.discard(p)
                yield msg
            if at_end & pending:
                positions = consumer.position([TopicPartition(topic, p) for p in sorted(at_end & pending)])
                pending -= {tp.partition for tp in positions if tp.offset >= stop[tp.partition]}
                at_end.clear()
    finally:
        consumer.unassign()


def consumable_end(consumer: Consumer, topic: str, partitions: list[int]) -> dict[int, int]:
    """Per partition, the offset after its last record a read_committed reader can see: what a consumer group
    commits once it has read everything. Below the high watermark when the log ends in transaction markers
    (or aborted records); 0 for a partition with nothing readable."""
    high = end_offsets(consumer, topic, partitions)
    out = {}
    for p in partitions:
        back, found = 16, -1
        while found < 0:
            start = max(0, high[p] - back)
            for msg in read_to_end(consumer, topic, {p: start}, {p: high[p]}):
                found = max(found, msg.offset() or 0)
            if start == 0:
                break
            back *= 4
        out[p] = found + 1 if found >= 0 else 0
    return out


def read_topic(cfg: HealthpipeConfig, topic: str, timeout: float = 120, committed_only: bool = True,
               from_offsets: dict[int, int] | None = None) -> list[Message]:
    """Every message of a whole topic (all partitions, from the start or `from_offsets`) up to its end now."""
    consumer = reader(cfg, committed_only=committed_only)
    try:
        partitions = partitions_of(consumer, topic)
        start = from_offsets or {p: 0 for p in partitions}
        return list(read_to_end(consumer, topic, start, timeout=timeout))
    finally:
        consumer.close()


def require_no_members(cfg: HealthpipeConfig, group: str) -> None:
    """ConfigError if `group` has active members (moving a live group's offsets would be undone)."""
    admin = admin_client(cfg.kafka)  # keep a reference: a collected client never completes its futures
    description = admin.describe_consumer_groups([group])[group].result(30)
    if description.members:
        raise ConfigError(f"group {group!r} has {len(description.members)} active members; stop its consumers "
                          f"first (offsets of a live group would be overwritten by its next commit)")
