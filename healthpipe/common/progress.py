"""Progress of a long command (verify, backfill, replay, export) on stderr: a rich bar per task on a terminal; where
stderr is not a terminal (a log file, CI, `docker logs`), plain lines instead of `\\r` redraws, at most one a second
per task plus its last."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


class Steps:
    """Call `steps(label, done, total, note)` after each step of a task; `close()` when the command ends."""

    def __init__(self, stream: TextIO | None = None, min_interval_seconds: float = 1.0):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.min_interval = min_interval_seconds
        self._bars: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._printed_at: dict[str, float] = {}

    def __call__(self, label: str, done: int, total: int, note: str = "") -> None:
        if self.tty:
            self._bar(label, done, total, note)
        else:
            self._line(label, done, total, note)

    def _bar(self, label: str, done: int, total: int, note: str) -> None:
        if self._bars is None:
            self._bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[note]}"), TimeElapsedColumn(),
                                  console=Console(file=self.stream), transient=False)
            self._bars.start()
        if label not in self._tasks:
            self._tasks[label] = self._bars.add_task(label, total=total, note=note)
        self._bars.update(self._tasks[label], completed=done, total=total, note=note)

    def _line(self, label: str, done: int, total: int, note: str) -> None:
        now = time.monotonic()
        last = self._printed_at.get(label)
        if done < total and last is not None and now - last < self.min_interval:
            return
        self._printed_at[label] = now
        self.stream.write(f"{label}: {done}/{total}{' ' + note if note else ''}\n")
        self.stream.flush()

    def close(self) -> None:
        if self._bars is not None:
            self._bars.stop()
            self._bars = None

    def __enter__(self) -> Steps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
