"""The sink interface: where a batch of series windows goes (InfluxDB, the Parquet archive, ...).

Every writer of the pipeline talks to a sink through these calls, so the consumer loop, replay and
the archive share one behaviour: rejected items go to the dead-letter topic, an unavailable sink is a
`Retryable` (with the server's retry_after) that the caller holds and retries, a misconfigured one is
`Fatal`. Only `write` must be implemented; every other call has a default that fits a sink whose writes are
durable when they return (InfluxDB's).

    check()              before the first batch: Retryable while the sink is not up, Fatal if it never will be
    prepare(windows, sources)
                         main thread, CPU only: turn the windows into the sink's own payload (lines, rows);
                         sources[i] is the Kafka record windows[i] came from. Default: the windows as they are
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
    caches()             the sink's bounded per-series caches (common/bounded.py), exported as metrics
    close()              the process is stopping: release connections (after the last flush)

A new sink subclasses `Sink`; nothing in the loop changes (docs/architecture.md, "Where a newcomer adds").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from healthpipe.common.bounded import BoundedCache
from healthpipe.common.messages import SeriesWindow
from healthpipe.common.records import Source, TopicPartitionKey


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

    @property
    def samples_in(self) -> int: ...

    @property
    def dropped(self) -> Mapping[str, int]: ...


P = TypeVar("P", bound=Prepared)


def drop_summary(dropped: Mapping[str, int]) -> str:
    """A batch's samples left out on purpose, by reason, as one log value: `nan:3,null:1` (`-` for none)."""
    return ",".join(f"{k}:{v}" for k, v in sorted(dropped.items())) or "-"


@dataclass
class Windows:
    """The default prepared batch: the windows and their records as they came (`Sink.prepare`'s default)."""

    windows: Sequence[SeriesWindow]
    sources: Sequence[Source]
    dropped: Mapping[str, int] = field(default_factory=dict)

    @property
    def samples_in(self) -> int:
        return sum(len(w.samples) for w in self.windows)


class Sink(Generic[P]):
    """Base class with defaults: a subclass implements `write` (and usually `prepare`), nothing else."""

    name: str = "sink"
    batch_size: int = 10_000  # samples the loop gathers before it dispatches a batch

    def check(self) -> None:
        return None

    def prepare(self, windows: Sequence[SeriesWindow], sources: Sequence[Source]) -> P:
        return Windows(windows, sources)  # type: ignore[return-value]  # a sink that keeps the default P

    def write(self, prepared: P) -> WriteOutcome:
        raise NotImplementedError(f"{type(self).__name__} must implement write()")

    def caches(self) -> Sequence[BoundedCache]:
        """The sink's per-series caches, so the process exports their size and evictions."""
        return ()

    def flush(self, partitions: set[TopicPartitionKey] | None = None) -> dict[TopicPartitionKey, int] | None:
        return self.durable()

    def durable(self) -> dict[TopicPartitionKey, int] | None:
        return None  # every write is durable when it returns

    def drop(self, partitions: set[TopicPartitionKey]) -> dict[TopicPartitionKey, int]:
        return {}  # nothing buffered across batches

    def assigned(self, committed: dict[TopicPartitionKey, int]) -> None:
        return None

    def committed(self, offsets: dict[TopicPartitionKey, int]) -> None:
        return None

    def tick(self) -> dict[TopicPartitionKey, int] | None:
        return None

    def close(self) -> None:
        return None
