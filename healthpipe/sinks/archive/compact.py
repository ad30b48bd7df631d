"""`healthpipe archive compact`: rewrite each day of the Iceberg table into a few large files sorted by
(series, ts), without the duplicate (series, ts) rows a replay or a re-delivered remote-write request leaves.

Per day (Iceberg partition): read its files, sort (a stable sort: of two rows with the same series and ts, the
one from the lower Kafka offset comes first and is kept), drop the repeats, write `compacted-<id>-<n>.parquet`
files, then **one overwrite snapshot** takes the old files out and puts the new ones in. Until that commit nothing
a reader sees has changed; after it, readers see the compacted day; a reader in the middle of a scan keeps its
snapshot, whose files are still there (old files go only when their snapshots are expired). A kill -9 anywhere
leaves the table as it was (plus unreferenced files) or compacted. The archiver may commit meanwhile: the commit
is optimistic, refreshed and retried, and files the archiver added after the plan are left alone.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from healthpipe.sinks.archive.files import encode
from healthpipe.sinks.archive.iceberg import DAY_MS, IcebergTable, Partition

log = logging.getLogger(__name__)
COMPACTED = "compacted-"
# Compacted files are written once and kept for good: zstd 19 took 10% fewer bytes than the archiver's 6 on both
# of B6b's sets (real 1 s scrapes, synthetic), for ~3x the encoding CPU (~1.9 CPU-s per million rows), paid once
COMPACT_ZSTD_LEVEL = 19


@dataclass
class Compaction:
    partition: str
    files_before: int
    files_after: int
    rows_before: int
    rows_after: int
    duplicates_removed: int
    bytes_before: int
    bytes_after: int
    seconds: float
    snapshot: int | None  # None: another writer compacted this day first; nothing was committed


def due(partition: Partition, before_ms: int | None) -> bool:
    """A day is compacted if it ends at or before `before_ms` (every day without it) and is not one compacted
    file already."""
    day_ms = int(np.datetime64(partition.day.removeprefix("ts_day="), "ms").astype(np.int64))
    if before_ms is not None and day_ms + DAY_MS > before_ms:
        return False
    return not (len(partition.files) == 1 and partition.files[0].file_path.rpartition("/")[2].startswith(COMPACTED))


def sorted_unique(table: pa.Table) -> pa.Table:
    """Rows sorted by (series, ts), the first of each (series, ts) kept."""
    table = table.sort_by([("series", "ascending"), ("ts", "ascending")])  # Arrow's sort is stable
    if table.num_rows < 2:
        return table
    series, ts = table["series"], table["ts"]
    repeat = pc.and_(pc.equal(series.slice(1), series.slice(0, table.num_rows - 1)),
                     pc.equal(ts.slice(1), ts.slice(0, table.num_rows - 1)))
    keep = pa.concat_arrays([pa.array([True]), pc.invert(repeat.combine_chunks())])
    return table.filter(pc.fill_null(keep, True))


def compact_partition(table: IcebergTable, partition: Partition, file_rows: int) -> Compaction:
    started = time.monotonic()
    fs = table.store.fs
    parts = [pq.read_table(fs.open_input_file(f.file_path.split("://", 1)[1])) for f in partition.files]
    rows = pa.concat_tables(parts, promote_options="permissive") if parts else None
    before = rows.num_rows if rows is not None else 0
    out = sorted_unique(rows) if rows is not None else pa.table({})
    run = uuid.uuid4().hex[:12]
    folder = f"{table.rel}/data/{partition.day}"
    written = []
    for n, start in enumerate(range(0, out.num_rows, file_rows)):
        path = f"{folder}/{COMPACTED}{run}-{n}.parquet"
        data = encode(out.slice(start, file_rows), store_schema=False, level=COMPACT_ZSTD_LEVEL)
        table.store.put(path, data)
        written.append((path, len(data)))
    snapshot = table.replace(partition.files, [p for p, _ in written], {
        "healthpipe.compacted": partition.day, "healthpipe.duplicates-removed": str(before - out.num_rows)})
    if snapshot is None:  # someone else rewrote this day first: our files are not named by any snapshot
        for path, _ in written:
            table.store.delete(path)
    result = Compaction(partition.day, len(partition.files), len(written), before, out.num_rows,
                        before - out.num_rows, partition.bytes, sum(size for _, size in written),
                        round(time.monotonic() - started, 3), snapshot)
    log.info("archive_compacted %s", " ".join(f"{k}={v}" for k, v in asdict(result).items()))
    return result


def compact(table: IcebergTable, before_ms: int | None, file_rows: int) -> list[Compaction]:
    return [compact_partition(table, p, file_rows) for p in list(table.partitions()) if due(p, before_ms)]


def report(results: list[Compaction]) -> str:
    if not results:
        return "nothing to compact"
    lines = [f"{'partition':<20} {'files':>11} {'rows':>21} {'duplicates':>10} {'bytes':>21} {'seconds':>8}"]
    for r in results:
        lines.append(f"{r.partition:<20} {r.files_before:>5} → {r.files_after:<3} {r.rows_before:>10} → "
                     f"{r.rows_after:<8} {r.duplicates_removed:>10} {r.bytes_before:>10} → {r.bytes_after:<8} "
                     f"{r.seconds:>8.2f}" + ("" if r.snapshot is not None else "  (compacted by another writer)"))
    return "\n".join(lines)
