"""B4: freshness — from a sample's timestamp to the moment it can be queried in InfluxDB.

The producer (poll interval 1 s, lag 1 s) and the consumer (batch age 0.5 s) run against the stack while
this script queries InfluxDB every 100 ms for the demo app's `up` samples (scraped every second): the first
time a sample shows up, its freshness is that moment minus its timestamp (so the figure includes up to one
query period, 100 ms, plus the query's own time). p50/p99 over every sample of the run.
The pipeline writes into a bucket of its own; at the end its contents are checked whole against a direct
Prometheus read of the same span (every sample there, nothing else), so fast never means incomplete.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time

from healthpipe.producer.service import ProducerService
from tests.integration.test_producer import prometheus_raw
from tests.support import influx
from tests.support.pipeline import ConsumerThread, committed_all, wait_until
from tests.support.services import native_or_exit


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    services = native_or_exit()
    query = {"name": "availability", "promql": 'up{job="test-app"}', "mode": "raw", "metric_type": "availability"}
    cfg = services.config(extract={"queries": [query], "lag_seconds": 1, "interval_seconds": 1,
                                   "max_backfill": "10s"},
                          consumer={"batch_max_age_seconds": 0.5})
    with influx.temporary_bucket(cfg.load.influxdb, "bench-fresh") as bucket:
        cfg = cfg.model_copy(update={"load": cfg.load.model_copy(update={"influxdb": bucket})})
        result = measure(cfg, args.seconds, services.prometheus_url)
    print(json.dumps(result, indent=2))
    return 0


def measure(cfg, seconds: float, prometheus_url: str) -> dict:
    producer = ProducerService(cfg)
    producer.initialize()
    threading.Thread(target=producer.run_continuous, daemon=True).start()
    consumer = ConsumerThread(cfg)
    time.sleep(5)  # warm up: first cycle, group join
    first_seen: dict[int, float] = {}  # sample timestamp (ms) -> when a query first returned it
    flux = 'r.metric == "up" and r.job == "test-app"'
    started = time.time()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rows = influx.points(cfg.load.influxdb, flux, start="-1m")
        seen = time.time()
        for r in rows:
            first_seen.setdefault(round(r["_time"].timestamp() * 1000), seen)
        time.sleep(0.1)
    producer.stop()
    time.sleep(1.5)  # the producer's loop notices the stop within a cycle
    end = producer.watermarks["availability"]
    producer.close()
    wait_until(lambda: committed_all(cfg), 60, what="the consumer to commit everything published")
    consumer.stop()
    # Contents: the bucket holds exactly what Prometheus has for the span the producer covered.
    begin = min(round(r["_time"].timestamp() * 1000) for r in influx.points(cfg.load.influxdb, "true", start="-10m"))
    stored = {(r["instance"], round(r["_time"].timestamp() * 1000), r["_value"])
              for r in influx.points(cfg.load.influxdb, "true", start="-10m")}
    direct = {(dict(labels)["instance"], ts, float(v))
              for labels, ts, v in prometheus_raw(prometheus_url, 'up{job="test-app"}', begin - 1, end)}
    assert stored == direct, f"bucket != Prometheus: {len(direct - stored)} missing, {len(stored - direct)} extra"
    # samples already there at the first query arrived before measuring began: their first sighting says nothing
    freshness = [seen - ts / 1000 for ts, seen in first_seen.items() if ts / 1000 > started]
    q = statistics.quantiles(freshness, n=100, method="inclusive")
    return {"samples": len(freshness), "p50_s": statistics.median(freshness), "p99_s": q[98],
            "max_s": max(freshness), "poll_interval_s": 1, "lag_s": 1, "target_p99_s": 3,
            "points_compared_whole": len(stored)}


if __name__ == "__main__":
    sys.exit(main())
