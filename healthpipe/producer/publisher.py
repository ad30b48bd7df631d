"""Publishes series windows and their watermark to Kafka in one transaction.

Order of one publish (each step must succeed before the next):
1. begin a transaction;
2. produce every message of every series (idempotent, acks=all, zstd), as `windows` yields them;
3. produce the query's new watermark to the compacted watermark topic;
4. commit: librdkafka flushes and fails the commit if any delivery failed.
Any failure aborts the transaction: neither the data nor the watermark becomes visible to
read_committed consumers, and the next cycle reads the same window again. Except a commit that failed (it
timed out): Kafka may complete it after all (the abort then conflicts with it), so its outcome is unknown
(`outcome_unknown`) and the service reloads the watermarks from the topic before the next window.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException, Producer

from healthpipe.common.config import HealthpipeConfig
from healthpipe.common.errors import Fatal, PublishError
from healthpipe.common.kafka import transactional_producer
from healthpipe.common.messages import SeriesWindow, headers
from healthpipe.producer import watermarks

log = logging.getLogger(__name__)


class TransactionalPublisher:
    def __init__(self, cfg: HealthpipeConfig, transactional_id: str | None = None, timeout: float = 30):
        self.cfg = cfg
        self.timeout = timeout
        self.transactional_id = transactional_id
        self.producer: Producer = transactional_producer(cfg, transactional_id)
        self._failed_deliveries = 0
        self._in_transaction = False
        self._needs_init = False
        self.transactions_begun = 0  # a transaction's number: which one a fault hit (tests, /metrics)
        # a commit that failed (it timed out, and the abort after it may conflict with it): Kafka may still
        # complete it, and only the watermark topic says whether it did
        self.outcome_unknown = False

    def init(self) -> None:
        """Register the transactional id; this fences and aborts a crashed predecessor's open transaction.

        Retryable while Kafka cannot be reached (a timeout leaves the producer usable for another try)."""
        try:
            self.producer.init_transactions(self.timeout)
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal():
                raise Fatal(f"Kafka refused transactional id {self.transactional_id!r}: {err}") from None
            raise PublishError(f"Kafka transactions not available: {err}") from None

    def ensure_initialized(self) -> None:
        """The init a failed abort deferred (a fresh producer while Kafka was away); PublishError (Retryable)
        while Kafka is still away. Once it returns, no transaction of ours is pending at the coordinator."""
        if self._needs_init:
            self.init()
            self._needs_init = False

    def publish(self, query: str, windows: Iterable[SeriesWindow], watermark_ms: int | None) -> int:
        """Publish `windows` and (if given) the query's new watermark atomically; return messages sent."""
        self._failed_deliveries = 0
        sent = 0
        self.ensure_initialized()
        try:
            self.producer.begin_transaction()
            self._in_transaction = True
            self.transactions_begun += 1
            for window in windows:
                for part in window.split(self.cfg.producer.max_samples_per_message,
                                         self.cfg.producer.max_message_bytes):
                    self._produce(self.cfg.kafka.topic, part.key, part.to_json(), headers())
                    sent += 1
            if watermark_ms is not None:
                key, value = watermarks.encode(query, watermark_ms)
                self._produce(self.cfg.kafka.watermark_topic, key, value, None)
            self._commit()
            return sent
        except KafkaException as exc:
            self._abort()
            raise PublishError(f"transaction for query {query!r} failed: {exc.args[0]}") from None
        except BaseException:
            # a PublishError, or `windows` failing mid-way (a window read in groups of series reads Prometheus
            # inside the transaction): nothing of it may become visible
            self._abort()
            raise

    def _produce(self, topic: str, key: bytes, value: bytes, hdrs: list | None) -> None:
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=hdrs, on_delivery=self._on_delivery)
                break
            except BufferError:  # local queue full: let librdkafka send, then try again
                self.producer.poll(0.1)
        self.producer.poll(0)

    def _on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            self._failed_deliveries += 1
            log.error("delivery_failed error=%s", err)

    def _commit(self) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self.producer.commit_transaction(max(1.0, deadline - time.monotonic()))
                break
            except KafkaException as exc:
                err = exc.args[0]
                # Retriable: the outcome is unknown and the commit may be retried as is.
                if err.retriable() and time.monotonic() < deadline:
                    continue
                self.outcome_unknown = True
                raise
        self._in_transaction = False
        # commit_transaction already fails on a failed delivery; this guards the invariant anyway.
        if self._failed_deliveries:
            raise PublishError(f"{self._failed_deliveries} deliveries failed after commit")

    def _abort(self) -> None:
        """Abort the open transaction; if even that fails (fenced, timed out, Kafka gone), start over with a
        fresh producer: its init_transactions fences this one and aborts whatever it left open."""
        if not self._in_transaction:
            return
        self._in_transaction = False
        try:
            self.producer.abort_transaction(self.timeout)
            return
        except KafkaException as exc:
            log.error("abort_failed error=%s; recreating the transactional producer", exc.args[0])
        self.producer = transactional_producer(self.cfg, self.transactional_id)
        try:
            self.init()
        except PublishError as exc:  # Kafka still away: the next publish tries init again
            log.warning("producer_reinit_deferred error=%s", exc)
            self._needs_init = True

    @property
    def in_transaction(self) -> bool:
        return self._in_transaction

    def close(self) -> None:
        self._abort()
        self.producer.flush(self.timeout)
