"""InfluxSink: the consumer's sink for InfluxDB, used by the live consumer and by `healthpipe replay`.

prepare = the DataTransformer (clean, count drops, line protocol as bytes, window by window, joined into
request bodies of up to `load.influxdb.batch_size` lines); write = the loader's HTTP writes of those bodies,
resuming after the last acknowledged request when called again after a failure. Lines InfluxDB refuses for good
come back as `Rejected`, for the dead-letter topic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from healthpipe.common.bounded import BoundedCache
from healthpipe.common.config import InfluxSettings, TransformSettings
from healthpipe.common.messages import SeriesWindow
from healthpipe.common.records import Source
from healthpipe.sinks.base import Rejected, Sink, WriteOutcome
from healthpipe.sinks.influx.loader import InfluxDBLoader, lines_of
from healthpipe.sinks.influx.transformer import DataTransformer, TransformBodies


@dataclass
class Request:
    """One write request's body: whole windows' lines, at most batch_size of them (unless one window has more)."""

    body: bytes
    lines: int
    windows: list[tuple[int, int]]  # (window index in the batch, its lines in the body), in body order

    def window_of(self, line: int) -> int:
        for window, n in self.windows:
            if line < n:
                return window
            line -= n
        raise IndexError(line)


@dataclass
class InfluxBatch:
    """A batch as line protocol in request bodies, with how far its write has got (kept across retries: transform
    once)."""

    requests: list[Request]
    dropped: Counter
    samples_in: int
    written_upto: int = 0  # requests acknowledged so far
    outcome: WriteOutcome = field(default_factory=WriteOutcome)


def requests_of(bodies: TransformBodies, batch_size: int) -> list[Request]:
    """Consecutive windows' bodies joined into requests of up to batch_size lines (bodies are never split: a
    window is at most one message's samples)."""
    requests: list[Request] = []
    parts: list[bytes] = []
    windows: list[tuple[int, int]] = []
    lines = 0
    for window, body, n in bodies.bodies:
        if lines and lines + n > batch_size:
            requests.append(Request(b"".join(parts), lines, windows))
            parts, windows, lines = [], [], 0
        parts.append(body)
        windows.append((window, n))
        lines += n
    if lines:
        requests.append(Request(b"".join(parts), lines, windows))
    return requests


class InfluxSink(Sink[InfluxBatch]):
    """Every write is durable when it returns, so the base class's flush, durable, drop, ... fit as they are."""

    name = "influx"

    def __init__(self, influx: InfluxSettings, transform: TransformSettings,
                 transformer: DataTransformer | None = None, loader: InfluxDBLoader | None = None):
        self.settings = influx
        self.batch_size = influx.batch_size
        self.transformer = transformer or DataTransformer(transform)
        self.loader = loader or InfluxDBLoader(influx)

    def check(self) -> None:
        self.loader.check_bucket()

    def caches(self) -> Sequence[BoundedCache]:
        return (self.transformer.prefix_cache,)

    def prepare(self, windows: Sequence[SeriesWindow], sources: Sequence[Source]) -> InfluxBatch:
        result = self.transformer.transform_bodies(windows)
        return InfluxBatch(requests_of(result, self.batch_size), result.dropped, result.samples_in)

    def write(self, prepared: InfluxBatch) -> WriteOutcome:
        while prepared.written_upto < len(prepared.requests):
            request = prepared.requests[prepared.written_upto]
            result = self.loader.write_body(request.body, request.lines)  # Retryable / Fatal: retried whole
            prepared.outcome.written += result.written
            if result.rejected:
                where = {line: i for i, line in enumerate(lines_of(request.body, request.lines))}
                prepared.outcome.rejected.extend(
                    Rejected(request.window_of(where[r.line]), r.line.encode(), r.body, r.status)
                    for r in result.rejected)
            prepared.written_upto += 1
        return prepared.outcome

    def close(self) -> None:
        self.loader.close()
