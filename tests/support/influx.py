"""Reading InfluxDB back in tests: counts and points, straight through influxdb-client's Flux API."""

from __future__ import annotations

from influxdb_client import InfluxDBClient

from common.config import InfluxSettings


def client(settings: InfluxSettings) -> InfluxDBClient:
    return InfluxDBClient(url=settings.url, token=settings.token.get_secret_value(), org=settings.org,
                          timeout=60_000)


def points(settings: InfluxSettings, predicate: str, start: str = "0", stop: str = "2100-01-01T00:00:00Z",
           measurement: str = "health_metrics") -> list[dict]:
    """Every point matching the Flux `predicate` (a filter body over r), as dicts of tags + _time + _value."""
    flux = (f'from(bucket: "{settings.bucket}") |> range(start: {start}, stop: {stop}) '
            f'|> filter(fn: (r) => r._measurement == "{measurement}" and ({predicate}))')
    with client(settings) as c:
        tables = c.query_api().query(flux)
    return [rec.values for table in tables for rec in table.records]


def count(settings: InfluxSettings, predicate: str, **kwargs) -> int:
    return len(points(settings, predicate, **kwargs))
