"""healthpipe: health metrics from Prometheus through Kafka into InfluxDB and a Parquet cold tier, verified.

The packages, one job each (docs/architecture.md has the map and the import rules):
schema (what a sample becomes), common (config, errors, messages, Kafka clients), producer, consumer (the
generic loop), sinks (influx, archive), verify, tiers, ml (exports and online features), ops (the native stack
and tooling), and cli (the `healthpipe` command).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("healthpipe")
except PackageNotFoundError:  # a checkout on sys.path without an install
    __version__ = "0+unknown"
