"""The sink interface: where a batch of series windows goes (InfluxDB, the Parquet archive, ...).

Every writer of the pipeline talks to a sink through these four calls, so the consumer loop, replay and
the archive share one behaviour: rejected items go to the dead-letter topic, an unavailable sink is a
`Retryable` (with the server's retry_after) that the caller holds and retries, a misconfigured one is
`Fatal`.

    check()              before the first batch: Retryable while the sink is not up, Fatal if it never will be
    prepare(windows, sources)
                         main thread, CPU only: turn the windows into the sink's own payload (lines, rows);
                         sources[i] is the Kafka record windows[i] came from
    write(prepared)      a writer thread: make the payload durable; raise Retryable to be called again with
                         the same `prepared` (a sink resumes where it stopped), Fatal to stop
    flush(partitions)    make everything buffered for these partitions durable now (revoke, shutdown);
                         returns what `durable()` would
    durable()            per (topic, partition), the offset up to which written data is durable, for sinks
                         that buffer across batches (a Parquet file spans many); None: each write is durable
    drop(partitions)     forget what is buffered for partitions we lost or handed over; returns the first
                         offset dropped per partition, so the loop can seek back to it
    assigned(committed)  partitions arrived, with the group's committed offsets (a sink may recover from them)
    committed(offsets)   the checkpoint committed these offsets (a sink may clean up what it kept for recovery)
    tick()               the loop is idle: seal what is due; returns offsets newly durable (or None)

A new sink implements `Sink`; nothing in the loop changes (docs/architecture.md, "Adding a sink").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from confluent_kafka import Message

from common.messages import SeriesWindow

TopicPartitionKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Source:
    """The Kafka record a window came from: what a dead letter carries and a rewind goes back to."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def of(cls, msg: Message) -> Source:
        headers: Any = msg.headers() or ()
        return cls(msg.topic() or "", msg.partition() or 0, msg.offset() or 0, msg.key(), msg.value(),
                   tuple(headers))


@dataclass(frozen=True, slots=True)
class Rejected:
    """An item the sink refused for good: it goes to the dead-letter topic with the window's source record."""

    window: int  # index of the window it came from, in the batch passed to prepare()
    payload: bytes  # what was refused (a line of line protocol, say), sent as the dead letter's value
    detail: str
    status: int | None = None


@dataclass
class WriteOutcome:
    written: int = 0
    rejected: list[Rejected] = field(default_factory=list)


class Prepared(Protocol):
    """A batch in the sink's own form. `dropped` counts samples left out on purpose, by reason."""

    samples_in: int
    dropped: Mapping[str, int]


P = TypeVar("P", bound=Prepared)


class Sink(Protocol[P]):
    name: str
    batch_size: int  # samples the loop gathers before it dispatches a batch

    def check(self) -> None: ...
    def prepare(self, windows: Sequence[SeriesWindow], sources: Sequence[Source]) -> P: ...
    def write(self, prepared: P) -> WriteOutcome: ...
    def flush(self, partitions: set[TopicPartitionKey] | None = None) -> dict[TopicPartitionKey, int] | None: ...
    def durable(self) -> dict[TopicPartitionKey, int] | None: ...
    def drop(self, partitions: set[TopicPartitionKey]) -> dict[TopicPartitionKey, int]: ...
    def assigned(self, committed: dict[TopicPartitionKey, int]) -> None: ...
    def committed(self, offsets: dict[TopicPartitionKey, int]) -> None: ...
    def tick(self) -> dict[TopicPartitionKey, int] | None: ...
    def close(self) -> None: ...
