"""B4: freshness — from a sample's timestamp to the moment it can be queried in InfluxDB.

The producer (poll interval 1 s, lag 1 s) and the consumer (batch age 0.5 s) run against the stack while
this script queries InfluxDB every 100 ms for the demo app's `up` samples (scraped every second): the first
time a sample shows up, its freshness is that moment minus its timestamp (so the figure includes up to one
query period, 100 ms, plus the query's own time). p50/p99 over every sample of the run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time

from producer.service import ProducerService
from tests.support import influx
from tests.support.pipeline import ConsumerThread
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
    producer = ProducerService(cfg)
    producer.initialize()
    threading.Thread(target=producer.run_continuous, daemon=True).start()
    consumer = ConsumerThread(cfg)
    time.sleep(5)  # warm up: first cycle, group join
    first_seen: dict[int, float] = {}  # sample timestamp (ms) -> when a query first returned it
    flux = 'r.metric == "up" and r.job == "test-app"'
    started = time.time()
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        rows = influx.points(cfg.load.influxdb, flux, start="-1m")
        seen = time.time()
        for r in rows:
            first_seen.setdefault(int(r["_time"].timestamp() * 1000), seen)
        time.sleep(0.1)
    producer.stop()
    consumer.stop()
    producer.close()
    # samples already there at the first query arrived before measuring began: their first sighting says nothing
    freshness = [seen - ts / 1000 for ts, seen in first_seen.items() if ts / 1000 > started]
    q = statistics.quantiles(freshness, n=100, method="inclusive")
    result = {"samples": len(freshness), "p50_s": statistics.median(freshness), "p99_s": q[98],
              "max_s": max(freshness), "poll_interval_s": 1, "lag_s": 1, "target_p99_s": 3}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
