"""IcebergSink: the archiver's sink for `archive.format: iceberg` (the table: iceberg.py).

Ranges of offsets are cut and their files built exactly as ParquetSink does (sink.py), one file per day its
samples fall in (the table's partitions are day(ts)). Publishing differs:

    1. every built range's files are written (names still say topic, partition and offsets: easy to trace);
    2. one snapshot adds them all and records, in its summary, where each partition's records now end;
    3. only then does `durable()` report those offsets, which the checkpoint commits.

A crash before 2 leaves files no snapshot names (orphans, invisible to readers); the group's committed offsets
are older and the records are read and written again. A crash between 2 and 3 leaves the table ahead of the
group: on reading its first record of a partition the sink asks the table where the partition ends and skips
every record below that, so nothing is written twice; the skipped offsets are reported durable at once.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as MetricCounter

from healthpipe.common.config import ArchiveSettings
from healthpipe.common.errors import HealthpipeError
from healthpipe.common.records import TopicPartitionKey
from healthpipe.sinks.archive.expire import Expirer
from healthpipe.sinks.archive.files import OpenRange, Parsed, encode, range_tables
from healthpipe.sinks.archive.iceberg import DAY_MS, IcebergTable, RangeFiles, day_dir
from healthpipe.sinks.archive.layout import file_name
from healthpipe.sinks.archive.sink import ParquetSink
from healthpipe.sinks.archive.store import Store

log = logging.getLogger(__name__)


class IcebergSink(ParquetSink):
    def __init__(self, settings: ArchiveSettings, store: Store, registry: CollectorRegistry, group_id: str,
                 clock=time.monotonic):
        super().__init__(settings, store, registry, clock)
        self.table = IcebergTable(settings, store)
        self.expirer = Expirer(self.table, settings.iceberg.keep_snapshots, clock)
        self.group_id = group_id
        self._skip_below: dict[TopicPartitionKey, int] = {}
        self.snapshots = MetricCounter("healthpipe_archive_snapshots_total", "Iceberg snapshots committed",
                                       registry=registry)
        self.skipped = MetricCounter("healthpipe_archive_records_skipped_total",
                                     "Records read again that the table already held (after a crash between "
                                     "a snapshot's commit and the offsets' commit)", registry=registry)

    def build_files(self, r: OpenRange) -> dict[str, bytes]:
        """One file per day of the range: <table>/data/ts_day=YYYY-MM-DD/<topic>+<partition>+<first>+<last>."""
        return {f"{self.table.rel}/data/{day_dir(day)}/{file_name(r.topic, r.partition, r.first, r.last)}":
                encode(table, store_schema=False) for day, table in range_tables(r, DAY_MS, ts_unit="us")}

    def check(self) -> None:
        super().check()
        self.table.table()

    # --- where a partition resumes --------------------------------------------------------------------------

    def _recover(self, key: TopicPartitionKey, first_offset: int) -> None:
        """The first record read of a partition: the table, not the group, says where its records end."""
        held = self.table.offsets(self.group_id).get(key)  # raises SinkUnavailable: the write is retried
        self._unrecovered.discard(key)
        if held is None:
            return
        if held > first_offset:
            log.warning("archive_resume_from_table partition=%s/%d group_offset=%d table_offset=%d: the last "
                        "snapshot was committed, its offsets were not; skipping %d records", *key, first_offset,
                        held, held - first_offset)
            self._skip_below[key] = held
            self._durable[key] = held
        elif held < first_offset:
            log.info("archive_resume partition=%s/%d table_offset=%d first_read=%d", *key, held, first_offset)

    def _append(self, p: Parsed, now: float) -> None:
        key = (p.source.topic, p.source.partition)
        if key in self._unrecovered:
            self._recover(key, p.source.offset)
        if p.source.offset < self._skip_below.get(key, -1):
            self.skipped.inc()
            return
        super()._append(p, now)

    def drop(self, partitions: set[TopicPartitionKey]) -> dict[TopicPartitionKey, int]:
        for key in partitions:
            self._skip_below.pop(key, None)
        return super().drop(partitions)

    def committed(self, offsets: dict[TopicPartitionKey, int]) -> None:
        return None  # no intents to clean up: the snapshot is the record

    # --- publishing -----------------------------------------------------------------------------------------

    def _publish_sealed(self, wait: bool = True) -> None:
        """Write the built ranges' files, then add them all in one snapshot; a failure raises and the next call
        resumes (files already written are not written again)."""
        ready = []
        for s in self._sealed:
            if not wait and not s.build.done():
                break
            ready.append(s)
        if not ready:
            return
        for s in ready:
            self._put_files(s)
        started = time.monotonic()
        snapshot = self.table.append(self.group_id, [RangeFiles((s.topic, s.partition), s.first, s.last,
                                                                sorted(s.files)) for s in ready])
        if snapshot is not None:
            self.snapshots.inc()
        for s in ready:
            self.metrics.rows.inc(s.rows)
            self._sealed.remove(s)
            self._durable[(s.topic, s.partition)] = s.last + 1
        log.info("archive_snapshot_committed snapshot=%s ranges=%s rows=%d seconds=%.3f", snapshot,
                 ",".join(f"{s.topic}/{s.partition}:{s.first}-{s.last}" for s in ready), sum(s.rows for s in ready),
                 time.monotonic() - started)
        try:
            self.expirer.after_commit()
        except HealthpipeError as exc:  # upkeep, not archiving: the rows are committed; tried again next time
            log.warning("archive_expiry_failed error=%s", exc)
