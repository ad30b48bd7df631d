"""The dead-letter topic: what could not be loaded, with the reason, never dropped silently.

A dead letter keeps the source record's key and headers, and its value (or, for an item a sink refused, the
refused item itself: one line of line protocol), and adds `healthpipe-dlq-*` headers: reason, source
topic/partition/offset, error detail (and the sink's status for refused items).
Callers flush this producer and check every delivery before they commit the source offsets: if a dead
letter cannot be written, the offset is not committed and the message comes back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import KafkaError, Producer

from common.errors import DeadLetterError
from consumer.sink import Source

log = logging.getLogger(__name__)

REASON, DETAIL, STATUS = "healthpipe-dlq-reason", "healthpipe-dlq-detail", "healthpipe-dlq-influx-status"
SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET = ("healthpipe-dlq-source-topic", "healthpipe-dlq-source-partition",
                                                 "healthpipe-dlq-source-offset")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str
    detail: str
    source: Source
    value: bytes | None = None  # None: the source record's own value
    status: int | None = None

    def kafka_headers(self) -> list[tuple[str, str | bytes | None]]:
        s = self.source
        extra: list[tuple[str, str | bytes | None]] = [
            (REASON, self.reason.encode()), (DETAIL, self.detail[:2000].encode(errors="replace")),
            (SOURCE_TOPIC, s.topic.encode()), (SOURCE_PARTITION, str(s.partition).encode()),
            (SOURCE_OFFSET, str(s.offset).encode())]
        if self.status is not None:
            extra.append((STATUS, str(self.status).encode()))
        return [*s.headers, *extra]


class DeadLetterWriter:
    def __init__(self, producer: Producer, topic: str, timeout: float = 30):
        self.producer = producer
        self.topic = topic
        self.timeout = timeout
        self._failed: list[str] = []
        self.pending = 0

    def send(self, letter: DeadLetter) -> None:
        value = letter.source.value if letter.value is None else letter.value
        while True:
            try:
                self.producer.produce(self.topic, key=letter.source.key, value=value,
                                      headers=letter.kafka_headers(), on_delivery=self._on_delivery)
                break
            except BufferError:
                self.producer.poll(0.1)
        self.pending += 1
        s = letter.source
        log.warning("dead_letter reason=%s source=%s/%d@%d detail=%s", letter.reason, s.topic, s.partition,
                    s.offset, letter.detail[:200])

    def deliver(self, letters: list[DeadLetter], timeout: float | None = None) -> None:
        """Send `letters` and wait until Kafka has every one; DeadLetterError (Retryable) if any is not there.

        After a failure the caller sends the same letters again (dead letters are at-least-once: a letter
        that was merely slow may then be there twice); only after success may it commit their sources.
        """
        if not letters:
            return
        self._failed = []
        for letter in letters:
            self.send(letter)
        remaining = self.producer.flush(self.timeout if timeout is None else timeout)
        failed, self._failed = self._failed, []
        self.pending = remaining
        if remaining or failed:
            raise DeadLetterError(f"{remaining} dead letters undelivered, {len(failed)} failed: {failed[:3]}")

    def _on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            self._failed.append(str(err))
