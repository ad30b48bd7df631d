"""The open batch: what the loop has consumed and not yet dispatched to the sink.

A batch lives through three phases, each with its own type, so no field is "not set yet":

    OpenBatch   (here)            consuming: windows, their sources, dead letters, offsets accumulate
    InFlight    (checkpoint.py)   dispatched: prepared for the sink, written by a writer thread
    committed   (gone)            the sink has it durably and the offsets are committed

Offsets are recorded for every message, the malformed ones too: a dead-lettered message is processed.
"""

from __future__ import annotations

import time
from typing import Any

from healthpipe.common.dead_letters import DeadLetter
from healthpipe.common.messages import SeriesWindow
from healthpipe.common.records import Source
from healthpipe.consumer.offsets import OffsetTracker
from healthpipe.sinks.base import Prepared, Sink


class OpenBatch:
    def __init__(self) -> None:
        self.windows: list[SeriesWindow] = []
        self.sources: list[Source] = []
        self.letters: list[DeadLetter] = []  # malformed messages, delivered when the batch completes
        self.offsets = OffsetTracker()
        self.samples = 0
        self.started = time.monotonic()
        # The sink's form of this batch, made ahead while the writers are busy (the transform overlaps a
        # write); any message added afterwards voids it.
        self._prepared: Prepared | None = None

    def __bool__(self) -> bool:
        return bool(self.offsets)

    def __len__(self) -> int:
        return len(self.sources)

    def _note(self, source: Source) -> None:
        if not self:
            self.started = time.monotonic()  # a batch's age counts from its first message
        self.offsets.record(source.topic, source.partition, source.offset)
        self._prepared = None

    def add(self, window: SeriesWindow, source: Source) -> None:
        self._note(source)
        self.windows.append(window)
        self.sources.append(source)
        self.samples += len(window.samples)

    def reject(self, letter: DeadLetter) -> None:
        """A message that cannot be loaded at all: its dead letter goes out with this batch."""
        self._note(letter.source)
        self.letters.append(letter)

    def due(self, batch_size: int, max_age_seconds: float) -> bool:
        return bool(self) and (self.samples >= batch_size or time.monotonic() - self.started >= max_age_seconds)

    def prepare(self, sink: Sink[Any]) -> Prepared:
        """The sink's form of the batch (computed once, however often this is asked)."""
        if self._prepared is None:
            self._prepared = sink.prepare(self.windows, self.sources)
        return self._prepared

    def messages_wanted(self, batch_size: int, poll_batch: int) -> int:
        """About as many messages as the batch has room for, so memory stays near batch_size."""
        room = batch_size - self.samples
        per_message = self.samples / len(self.sources) if self.sources else 100.0
        return max(1, min(poll_batch, int(room / max(per_message, 1.0)) + 1))
