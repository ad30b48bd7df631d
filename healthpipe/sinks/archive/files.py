"""The archive's file writer: a message's samples as arrays (`Parsed`), a partition's open range of offsets
(`OpenRange`), and a sealed range's Parquet files (`build_files`). No offsets are committed and nothing is stored
here: the sink (sink.py) decides when a range is sealed and where its files go.

Rows (zstd; strings dictionary-encoded; ts delta-encoded): ts (timestamp[ms, UTC]), value (float64; NaN and
±Inf kept as Prometheus gave them; null only for a value that is not a number at all), metric, query,
metric_type, series (the message key), labels (map).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from healthpipe.common.records import Source
from healthpipe.sinks.archive import arrays, layout


@dataclass
class Parsed:
    """One message's samples as arrays, ready to append."""

    source: Source
    series: tuple[str, str, str, str, str]  # (series key, query, metric_type, metric, labels as JSON)
    ts: np.ndarray
    values: np.ndarray
    nulls: np.ndarray | None  # True where the value is not a number at all


@dataclass
class OpenRange:
    """An open range of one partition: the rows of offsets first..last, in offset order."""

    topic: str
    partition: int
    first: int
    started: float
    last: int = -1
    rows: int = 0
    chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray | None, int]] = field(default_factory=list)
    series: dict[tuple, int] = field(default_factory=dict)  # series → index, in first-seen order

    def append(self, p: Parsed) -> None:
        index = self.series.setdefault(p.series, len(self.series))
        self.chunks.append((p.ts, p.values, p.nulls, index))
        self.last = p.source.offset
        self.rows += len(p.ts)


def values_of(raw: list) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        return np.array(raw, dtype=np.float64), None
    except (ValueError, TypeError):  # a value that is not a number at all: null, the rest as given
        out = np.empty(len(raw), dtype=np.float64)
        nulls = np.zeros(len(raw), dtype=bool)
        for i, v in enumerate(raw):
            try:
                out[i] = float(v)
            except (ValueError, TypeError):
                out[i], nulls[i] = np.nan, True
        return out, nulls


def timestamps_of(raw: list) -> np.ndarray | None:
    """The timestamps as int64, or None if any is not a positive integer (then the caller filters)."""
    if all(type(t) is int for t in raw):
        ts = np.array(raw, dtype=np.int64)
        if len(ts) == 0 or ts.min() > 0:
            return ts
    return None



def range_tables(r: OpenRange, bucket_ms: int, ts_unit: str = "ms") -> Iterator[tuple[int, pa.Table]]:
    """A sealed range's rows split by time bucket (an hour for the hive layout, a day for Iceberg's day(ts)):
    (bucket start in ms, rows), rows in offset order, dictionaries in first-seen order (deterministic)."""
    ts = np.concatenate([c[0] for c in r.chunks])
    values = np.concatenate([c[1] for c in r.chunks])
    nulls = np.concatenate([c[2] if c[2] is not None else np.zeros(len(c[0]), dtype=bool) for c in r.chunks])
    index = np.concatenate([np.full(len(c[0]), c[3], dtype=np.int32) for c in r.chunks])
    series = sorted(r.series, key=r.series.__getitem__)  # first-seen order: deterministic
    columns = list(zip(*series, strict=True)) if series else [(), (), (), (), ()]
    dictionaries = [arrays.strings(col) for col in columns[:4]]
    label_maps = [orjson.loads(j) for j in columns[4]]
    offsets = np.cumsum([0] + [len(m) for m in label_maps]).astype(np.int32)
    labels = pa.MapArray.from_arrays(arrays.numeric(offsets, pa.int32()),
                                     arrays.strings([k for m in label_maps for k in m]),
                                     arrays.strings([v for m in label_maps for v in m.values()]))
    buckets = ts // bucket_ms * bucket_ms
    scale = {"ms": 1, "us": 1000}[ts_unit]  # Iceberg's timestamptz is microseconds
    for bucket in np.unique(buckets):
        rows = np.nonzero(buckets == bucket)[0]
        idx = arrays.numeric(index[rows], pa.int32())
        yield int(bucket), pa.table({
            "ts": arrays.numeric(ts[rows] * scale, pa.timestamp(ts_unit, tz="UTC")),
            "value": arrays.numeric(values[rows], pa.float64(), nulls[rows]),
            "metric": pa.DictionaryArray.from_arrays(idx, dictionaries[3]),
            "query": pa.DictionaryArray.from_arrays(idx, dictionaries[1]),
            "metric_type": pa.DictionaryArray.from_arrays(idx, dictionaries[2]),
            "series": pa.DictionaryArray.from_arrays(idx, dictionaries[0]),
            "labels": labels.take(idx),
        })


def encode(table: pa.Table, store_schema: bool = True, value_encoding: str = "PLAIN", level: int = 6,
           row_group_rows: int = 1 << 20) -> bytes:
    """One Parquet file's bytes, with the archive's encodings. store_schema=False: no Arrow schema in the footer
    (Iceberg files: readers take the table's schema, and Iceberg has no dictionary type to restore). The other
    arguments are what bench/cold_tier.py varies; the defaults are what it measured best."""
    buf = io.BytesIO()
    # bench/archive.py measured: PLAIN values under zstd level 6 take about half the bytes of
    # BYTE_STREAM_SPLIT for Prometheus-like values (few significant digits), at ~9 M samples/s
    pq.write_table(table, buf, compression="zstd", compression_level=level, store_schema=store_schema,
                   use_dictionary=["metric", "query", "metric_type", "series", "labels.key_value.key",
                                   "labels.key_value.value"],
                   column_encoding={"ts": "DELTA_BINARY_PACKED", "value": value_encoding},
                   # min/max where readers prune (time, query, series); not for every label key and value
                   # of every row, which was 28% of writing a file (bench/archive.py's data)
                   write_statistics=["ts", "value", "metric", "query", "metric_type", "series"],
                   row_group_size=row_group_rows)
    return buf.getvalue()


def build_files(r: OpenRange) -> dict[str, bytes]:
    """A sealed range's Parquet files, one per hour its samples fall in: path → bytes. The same range always gives
    the same bytes (rows in offset order, dictionaries in first-seen order), which is what makes a re-cut after a
    crash write exactly the files it replaces."""
    return {layout.FileKey(hour, r.topic, r.partition, r.first, r.last).path: encode(table)
            for hour, table in range_tables(r, layout.HOUR_MS)}
