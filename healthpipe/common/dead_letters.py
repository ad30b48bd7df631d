"""The dead-letter topic: what could not be loaded, with the reason, never dropped silently.

A dead letter keeps the source record's key and headers, and its value (or, for an item a sink refused, the
refused item itself: one line of line protocol), and adds `healthpipe-dlq-*` headers: reason, source
topic/partition/offset, error detail (and, for refused items, the status code the sink refused them with:
`healthpipe-dlq-error-status`, written as `healthpipe-dlq-influx-status` before 0.2 and still read under that name).
The consumer, replay and the archive write dead letters through this module, and verify reads them back with
`headers_of`.
Callers flush this producer and check every delivery before they commit the source offsets: if a dead
letter cannot be written, the offset is not committed and the message comes back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Producer

from healthpipe.common.errors import DeadLetterError
from healthpipe.common.records import Source

log = logging.getLogger(__name__)

REASON, DETAIL, STATUS = "healthpipe-dlq-reason", "healthpipe-dlq-detail", "healthpipe-dlq-error-status"
OLD_STATUS = "healthpipe-dlq-influx-status"  # the same header's name in records written before 0.2
SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET = ("healthpipe-dlq-source-topic", "healthpipe-dlq-source-partition",
                                                 "healthpipe-dlq-source-offset")


@dataclass(frozen=True, slots=True)
class DeadLetterHeaders:
    """What a dead letter's headers say, read back (verify's accounting, an operator's script)."""

    reason: str
    detail: str
    status: int | None
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None


# a record's headers, as confluent-kafka gives them
RecordHeaders = list[tuple[str, str | bytes | None]] | dict[str, str | bytes | None] | None


def headers_of(headers: RecordHeaders) -> DeadLetterHeaders:
    """A dead letter's `healthpipe-dlq-*` headers; the status is read under its old name too."""
    pairs = headers.items() if isinstance(headers, dict) else headers or []
    h = {k: v.decode(errors="replace") if isinstance(v, bytes) else v for k, v in pairs if v is not None}
    status = h.get(STATUS, h.get(OLD_STATUS))
    partition, offset = h.get(SOURCE_PARTITION), h.get(SOURCE_OFFSET)
    return DeadLetterHeaders(h.get(REASON, "?"), h.get(DETAIL, ""),
                             int(status) if status and status.isdigit() else None, h.get(SOURCE_TOPIC),
                             int(partition) if partition and partition.isdigit() else None,
                             int(offset) if offset and offset.isdigit() else None)


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
            try:
                self.send(letter)
            except KafkaException as exc:
                # Refused before it left (librdkafka remembers a topic it may not write, e.g. an ACL revoked at
                # run time): the same as a failed delivery, the batch is held and retried, nothing committed.
                self._failed.append(str(exc))
        remaining = self.producer.flush(self.timeout if timeout is None else timeout)
        failed, self._failed = self._failed, []
        self.pending = remaining
        if remaining or failed:
            raise DeadLetterError(f"{remaining} dead letters undelivered, {len(failed)} failed: {failed[:3]}")

    def _on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            self._failed.append(str(err))
