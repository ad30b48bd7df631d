"""Reading a query's samples from whichever tier holds them: hot (raw, InfluxDB), warm (downsampled, InfluxDB),
cold (the Parquet archive). Every reader returns the same frame: one column per tag as InfluxDB stores it, `ts`
(ms) and `value`, so a series has the same identity (`series_id`) whichever tier served it.

Which tier serves which part of a range (`plan`):
- hot, for what it still holds: from now - tiers.hot.retention on;
- before that, warm when the grid step is a multiple of a warm tier's window (its `last` aggregate, taken as
  observed at the end of its window), else cold (every raw sample, from the archive).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from healthpipe.common.config import HealthpipeConfig, InfluxSettings, QuerySettings, WarmTier
from healthpipe.common.errors import ConfigError, SinkUnavailable
from healthpipe.common.flux import query_predicate, read_frame, read_frames
from healthpipe.common.messages import SeriesWindow
from healthpipe.schema import stored_tags
from healthpipe.sinks.influx.transformer import DataTransformer


@dataclass(frozen=True)
class Part:
    tier: str  # hot / warm / cold
    start_ms: int  # exclusive
    end_ms: int  # inclusive
    detail: str = ""
    snapshot_id: int | None = None  # cold, archive.format iceberg: the table snapshot every read of it uses


def warm_for(cfg: HealthpipeConfig, step_ms: int | None) -> WarmTier | None:
    if not step_ms:
        return None
    fitting = [w for w in cfg.tiers.warm if step_ms % w.every.ms == 0]
    return max(fitting, key=lambda w: w.every.ms) if fitting else None


def plan(cfg: HealthpipeConfig, start_ms: int, end_ms: int, step_ms: int | None, now_ms: int,
         snapshot_id: int | None = None) -> list[Part]:
    """snapshot_id: the whole range from that snapshot of the Iceberg table (a training set rebuilt as it was)."""
    if snapshot_id is not None:
        if cfg.archive.format != "iceberg":
            raise ConfigError(f"a snapshot ({snapshot_id}) is read from an Iceberg archive; this config's "
                              f"archive.format is {cfg.archive.format}")
        if _iceberg(cfg).table(refresh=True).snapshot_by_id(snapshot_id) is None:
            raise ConfigError(f"the Iceberg table {cfg.archive.iceberg.table} has no snapshot {snapshot_id} (it may "
                              f"have been expired); an export's manifest names the one it read (iceberg_snapshot)")
        return [Part("cold", start_ms, end_ms, f"iceberg {cfg.archive.iceberg.table} snapshot {snapshot_id}",
                     snapshot_id)]
    hot_from = now_ms - cfg.tiers.hot.retention.ms
    parts = []
    if start_ms < min(hot_from, end_ms):
        older_end = min(hot_from, end_ms)
        warm = warm_for(cfg, step_ms)
        parts.append(Part("warm", start_ms, older_end, f"bucket {warm.bucket}, aggregate last of {warm.every}")
                     if warm else _cold(cfg, start_ms, older_end))
    if end_ms > hot_from:
        parts.append(Part("hot", max(start_ms, hot_from), end_ms, f"bucket {cfg.load.influxdb.bucket}"))
    return parts


def _cold(cfg: HealthpipeConfig, start_ms: int, end_ms: int) -> Part:
    """The archive's part; an Iceberg table's current snapshot is pinned here, so every chunk reads the same one."""
    if cfg.archive.format != "iceberg":
        return Part("cold", start_ms, end_ms, f"archive {cfg.archive.target}")
    snapshot = _iceberg(cfg).snapshot_id()
    return Part("cold", start_ms, end_ms, f"iceberg {cfg.archive.iceberg.table} snapshot {snapshot}", snapshot)


def _iceberg(cfg: HealthpipeConfig):
    from healthpipe.sinks.archive.iceberg import IcebergTable
    from healthpipe.sinks.archive.store import Store

    return IcebergTable(cfg.archive, Store(cfg.archive))


def read(cfg: HealthpipeConfig, query: QuerySettings, part: Part, last_every_ms: int | None = None,
         rows: int | None = None) -> Iterator[pd.DataFrame]:
    """The query's samples in part (start, end] from the part's tier, as frames each holding whole series: of about
    `rows` rows each from InfluxDB (None: one frame); the archive's in one frame."""
    if part.tier == "hot":
        yield from _influx(cfg.load.influxdb, query_predicate(query), part.start_ms, part.end_ms, last_every_ms, rows)
    elif part.tier == "warm":
        warm = warm_for(cfg, last_every_ms)
        assert warm is not None
        settings = cfg.load.influxdb.model_copy(update={"bucket": warm.bucket})
        # a warm point at window start W holds the last sample of [W, W + every): observed by W + every - 1 ms
        for frame in _influx(settings, query_predicate(query, field="last"), part.start_ms - warm.every.ms,
                             part.end_ms - warm.every.ms, None, rows):
            frame["ts"] = frame["ts"] + warm.every.ms  # observed at the window's end, like a hot step window
            yield frame
    else:
        yield read_cold(cfg, query, part.start_ms, part.end_ms, part.snapshot_id)


def _influx(settings: InfluxSettings, predicate: str, start_ms: int, end_ms: int, last_every_ms: int | None,
            rows: int | None) -> Iterator[pd.DataFrame]:
    if rows is None:
        yield read_frame(settings, predicate, start_ms, end_ms, last_every_ms)
        return
    empty = True
    for frame in read_frames(settings, predicate, start_ms, end_ms, rows, last_every_ms):
        empty = False
        yield frame
    if empty:
        yield pd.DataFrame(columns=["ts", "value"])


def _predicate(kind: Any, column: str, literal: object) -> Any:
    """pyiceberg's `kind(term, literal)`; typed loosely because mypy's pydantic plugin reads these predicates'
    fields instead of their __init__, and what it flags differs between runs (a clean cache or not)."""
    return kind(column, literal)


def read_cold(cfg: HealthpipeConfig, query: QuerySettings, start_ms: int, end_ms: int,
              snapshot_id: int | None = None) -> pd.DataFrame:
    """Raw samples from the archive, with each series' tags computed the way the consumer writes them."""
    columns = ["ts", "value", "query", "metric_type", "labels"]
    if cfg.archive.format == "iceberg":
        from pyiceberg.expressions import And, EqualTo, GreaterThan, LessThanOrEqual

        if snapshot_id is None:
            return pd.DataFrame(columns=["ts", "value"])  # an empty table: no snapshot yet
        # expressions, not text: the query's name is a literal, never parsed (no quoting to get wrong)
        where = And(_predicate(EqualTo, "query", query.name), _predicate(GreaterThan, "ts", start_ms * 1000),
                    _predicate(LessThanOrEqual, "ts", end_ms * 1000))
        table = _iceberg(cfg).read(columns, where, snapshot_id)
        table = table.set_column(0, "ts", table["ts"].cast(pa.timestamp("ms", tz="UTC")))
    else:
        from healthpipe.sinks.archive.store import Store

        store = Store(cfg.archive)
        try:
            dataset = ds.dataset(store.root, filesystem=store.fs, format="parquet", partitioning="hive")
        except (FileNotFoundError, OSError) as exc:
            if isinstance(exc, FileNotFoundError):
                return pd.DataFrame(columns=["ts", "value"])
            raise SinkUnavailable(f"the archive {store.describe} cannot be read: {exc}") from None
        lo = pd.Timestamp(start_ms + 1, unit="ms", tz="UTC")
        hi = pd.Timestamp(end_ms, unit="ms", tz="UTC")
        table = dataset.to_table(columns=columns, filter=(pc.field("query") == query.name) & (pc.field("ts") >= lo)
                                 & (pc.field("ts") <= hi))
    if table.num_rows == 0:
        return pd.DataFrame(columns=["ts", "value"])
    transformer = DataTransformer(cfg.transform)
    frame = pd.DataFrame({"ts": table["ts"].cast("int64").to_numpy(),
                          "value": table["value"].to_numpy(zero_copy_only=False)})
    labels = [tuple(sorted(kv)) for kv in table["labels"].to_pylist()]
    unique = {key: i for i, key in enumerate(dict.fromkeys(labels))}
    tag_rows = []
    for key in unique:
        window = SeriesWindow(query.name, query.metric_type, dict(key), 0, 0, [])
        tag_rows.append(stored_tags(transformer.tags(window)))
    tags = pd.DataFrame(tag_rows).fillna("")
    index = np.array([unique[k] for k in labels])
    frame = pd.concat([tags.iloc[index].reset_index(drop=True), frame], axis=1)
    # NaN/Inf are kept in the archive; the hot tier never had them: drop them so every tier agrees
    return frame[np.isfinite(frame["value"].to_numpy(dtype=np.float64))].reset_index(drop=True)
