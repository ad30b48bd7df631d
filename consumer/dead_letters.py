"""The dead-letter topic: what could not be loaded, with the reason, never dropped silently.

A dead letter keeps the original key, value and headers and adds `healthpipe-dlq-*` headers:
reason, source topic/partition/offset, error detail (and the InfluxDB status for rejected points).
The consumer flushes this producer and checks every delivery before it commits the source offsets:
if a dead letter cannot be written, the offset is not committed and the message comes back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import KafkaError, Producer

from common.errors import HealthpipeError

log = logging.getLogger(__name__)


class DeadLetterError(HealthpipeError):
    """Dead letters could not be delivered; the source offsets must not be committed."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    status: int | None = None

    def kafka_headers(self) -> list[tuple[str, str | bytes | None]]:
        extra: list[tuple[str, str | bytes | None]] = [("healthpipe-dlq-reason", self.reason.encode()),
                 ("healthpipe-dlq-detail", self.detail[:2000].encode(errors="replace")),
                 ("healthpipe-dlq-source-topic", self.topic.encode()),
                 ("healthpipe-dlq-source-partition", str(self.partition).encode()),
                 ("healthpipe-dlq-source-offset", str(self.offset).encode())]
        if self.status is not None:
            extra.append(("healthpipe-dlq-influx-status", str(self.status).encode()))
        return [*self.headers, *extra]


class DeadLetterWriter:
    def __init__(self, producer: Producer, topic: str):
        self.producer = producer
        self.topic = topic
        self._failed: list[str] = []
        self.pending = 0

    def send(self, letter: DeadLetter) -> None:
        while True:
            try:
                self.producer.produce(self.topic, key=letter.key, value=letter.value,
                                      headers=letter.kafka_headers(), on_delivery=self._on_delivery)
                break
            except BufferError:
                self.producer.poll(0.1)
        self.pending += 1
        log.warning("dead_letter reason=%s source=%s/%d@%d detail=%s", letter.reason, letter.topic,
                    letter.partition, letter.offset, letter.detail[:200])

    def flush(self, timeout: float = 30) -> None:
        """Wait for every dead letter sent so far; raise DeadLetterError if any was not delivered."""
        if self.pending == 0:
            return
        remaining = self.producer.flush(timeout)
        failed, self._failed = self._failed, []
        self.pending = 0
        if remaining or failed:
            raise DeadLetterError(f"{remaining} dead letters undelivered, {len(failed)} failed: {failed[:3]}")

    def _on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            self._failed.append(str(err))
