"""`healthpipe archive ls`: the archive's partitions (hive date/hour, or the Iceberg table's days), with row counts
and the offsets their files hold."""

from __future__ import annotations

import io
from collections import defaultdict
from datetime import UTC, datetime

import pyarrow.parquet as pq

from healthpipe.common.times import iso
from healthpipe.sinks.archive import layout
from healthpipe.sinks.archive.iceberg import DAY_MS, IcebergTable
from healthpipe.sinks.archive.store import Store


def partitions(store: Store, start_ms: int | None = None, end_ms: int | None = None) -> list[dict]:
    """One entry per date/hour partition overlapping (start, end]: files, rows, bytes, offsets per Kafka partition."""
    hours: dict[int, list[tuple[layout.FileKey, int]]] = defaultdict(list)
    for path, size in store.list():
        key = layout.parse(path)
        if key is None:
            continue
        if start_ms is not None and key.hour_ms + layout.HOUR_MS <= start_ms:
            continue
        if end_ms is not None and key.hour_ms > end_ms:
            continue
        hours[key.hour_ms].append((key, size))
    out = []
    for hour, files in sorted(hours.items()):
        offsets: dict[str, list[int]] = {}
        rows = 0
        for key, _size in files:
            rows += pq.ParquetFile(io.BytesIO(store.get(key.path))).metadata.num_rows
            span = offsets.setdefault(f"{key.topic}/{key.partition}", [key.first, key.last])
            span[0], span[1] = min(span[0], key.first), max(span[1], key.last)
        out.append({"partition": layout.hour_dir(hour), "start": iso(hour), "files": len(files), "rows": rows,
                    "bytes": sum(size for _, size in files), "offsets": offsets})
    return out


def iceberg_partitions(ice: IcebergTable, start_ms: int | None = None, end_ms: int | None = None) -> list[dict]:
    """The same entries for the Iceberg table's days (from its current snapshot: no file is opened). Offsets come
    from the archiver's file names; a compacted file's rows are counted but name no offsets."""
    out = []
    for p in ice.partitions():
        day = int(datetime.strptime(p.day, "ts_day=%Y-%m-%d").replace(tzinfo=UTC).timestamp() * 1000)
        if (start_ms is not None and day + DAY_MS <= start_ms) or (end_ms is not None and day > end_ms):
            continue
        offsets: dict[str, list[int]] = {}
        for f in p.files:
            key = layout.parse(f"{layout.hour_dir(day)}/{f.file_path.rpartition('/')[2]}")
            if key is not None:
                span = offsets.setdefault(f"{key.topic}/{key.partition}", [key.first, key.last])
                span[0], span[1] = min(span[0], key.first), max(span[1], key.last)
        out.append({"partition": p.day, "start": iso(day), "files": len(p.files), "rows": p.rows, "bytes": p.bytes,
                    "offsets": offsets})
    return out


def table(entries: list[dict]) -> str:
    if not entries:
        return "no archive files"
    lines = [f"{'partition':<28} {'files':>5} {'rows':>10} {'bytes':>10}  offsets (topic/partition: first-last)"]
    for e in entries:
        spans = ", ".join(f"{tp}: {a}-{b}" for tp, (a, b) in sorted(e["offsets"].items()))
        lines.append(f"{e['partition']:<28} {e['files']:>5} {e['rows']:>10} {e['bytes']:>10}  {spans}")
    lines.append(f"{'total':<28} {sum(e['files'] for e in entries):>5} {sum(e['rows'] for e in entries):>10} "
                 f"{sum(e['bytes'] for e in entries):>10}")
    return "\n".join(lines)
