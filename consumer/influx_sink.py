"""InfluxSink: the consumer's sink for InfluxDB, used by the live consumer and by `healthpipe replay`.

prepare = the DataTransformer (clean, count drops, line protocol); write = the loader's batched HTTP writes in
chunks of `load.influxdb.batch_size`, resuming after the last acknowledged chunk when called again after a
failure. Lines InfluxDB refuses for good come back as `Rejected`, for the dead-letter topic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from common.config import InfluxSettings, TransformSettings
from common.messages import SeriesWindow
from consumer.loader import InfluxDBLoader
from consumer.sink import Rejected, Source, TopicPartitionKey, WriteOutcome
from consumer.transformer import DataTransformer


@dataclass
class InfluxBatch:
    """A batch as line protocol, with how far its write has got (kept across retries: transform once)."""

    lines: list[str]
    line_window: list[int]  # per line: index of its window in the batch
    dropped: Counter
    samples_in: int
    written_upto: int = 0  # lines acknowledged so far
    outcome: WriteOutcome = field(default_factory=WriteOutcome)


class InfluxSink:
    name = "influx"

    def __init__(self, influx: InfluxSettings, transform: TransformSettings,
                 transformer: DataTransformer | None = None, loader: InfluxDBLoader | None = None):
        self.settings = influx
        self.batch_size = influx.batch_size
        self.transformer = transformer or DataTransformer(transform)
        self.loader = loader or InfluxDBLoader(influx)

    def check(self) -> None:
        self.loader.check_bucket()

    def prepare(self, windows: Sequence[SeriesWindow], sources: Sequence[Source]) -> InfluxBatch:
        result = self.transformer.transform(windows)
        return InfluxBatch(result.lines, result.sources, result.dropped, result.samples_in)

    def write(self, prepared: InfluxBatch) -> WriteOutcome:
        lines, size = prepared.lines, self.batch_size
        while prepared.written_upto < len(lines):
            chunk = lines[prepared.written_upto:prepared.written_upto + size]
            result = self.loader.write(chunk)  # Retryable / Fatal propagate; this chunk is retried whole
            prepared.outcome.written += result.written
            if result.rejected:
                where = {line: prepared.written_upto + i for i, line in enumerate(chunk)}
                prepared.outcome.rejected.extend(
                    Rejected(prepared.line_window[where[r.line]], r.line.encode(), r.body, r.status)
                    for r in result.rejected)
            prepared.written_upto += len(chunk)
        return prepared.outcome

    def flush(self, partitions: set[TopicPartitionKey] | None = None) -> None:
        return None  # every write is durable when it returns

    def durable(self) -> None:
        return None

    def drop(self, partitions: set[TopicPartitionKey]) -> dict[TopicPartitionKey, int]:
        return {}  # nothing buffered

    def assigned(self, committed: dict[TopicPartitionKey, int]) -> None:
        pass

    def committed(self, offsets: dict[TopicPartitionKey, int]) -> None:
        pass

    def tick(self) -> None:
        return None

    def close(self) -> None:
        self.loader.close()
