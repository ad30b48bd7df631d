"""Reading InfluxDB back in tests: counts and points, straight through influxdb-client's Flux API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from influxdb_client import InfluxDBClient

from healthpipe.common.config import InfluxSettings
from healthpipe.common.times import iso

__all__ = ["client", "count", "iso", "points", "run_points", "temporary_bucket"]


def client(settings: InfluxSettings) -> InfluxDBClient:
    return InfluxDBClient(**{**settings.client_kwargs(), "timeout": 60_000})


def points(settings: InfluxSettings, predicate: str, start: str = "0", stop: str = "2100-01-01T00:00:00Z",
           measurement: str | None = "health_metrics", imports: str = "") -> list[dict]:
    """Every point matching the Flux `predicate` (a filter body over r), as dicts of tags + _time + _value.
    `measurement=None` searches every measurement of the bucket."""
    where = f'r._measurement == "{measurement}" and ({predicate})' if measurement else predicate
    flux = (f'{imports}\nfrom(bucket: "{settings.bucket}") |> range(start: {start}, stop: {stop}) '
            f'|> filter(fn: (r) => {where})')
    with client(settings) as c:
        tables = c.query_api().query(flux)
    return [rec.values for table in tables for rec in table.records]


def run_points(settings: InfluxSettings, run: str, start: str = "0") -> set[tuple[str, int, float]]:
    """(instance, timestamp ms, value) of every point tagged run=<run>: what the data tests compare."""
    rows = points(settings, f'r.run == "{run}"', start=start)
    return {(r["instance"], round(r["_time"].timestamp() * 1000), r["_value"]) for r in rows}


def count(settings: InfluxSettings, predicate: str, **kwargs) -> int:
    return len(points(settings, predicate, **kwargs))


@contextmanager
def temporary_bucket(settings: InfluxSettings, prefix: str = "test") -> Iterator[InfluxSettings]:
    """A fresh bucket (deleted afterwards), as settings that point at it."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    with client(settings) as c:
        buckets = c.buckets_api()
        bucket = buckets.create_bucket(bucket_name=name, org=settings.org)
        try:
            yield settings.model_copy(update={"bucket": name})
        finally:
            buckets.delete_bucket(bucket)
