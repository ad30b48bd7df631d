"""B4: freshness — how old the newest demo-app sample in InfluxDB is, sampled every 200 ms for a minute,
while the producer (poll interval 1 s, lag 1 s) and the consumer (batch age 0.5 s) run against the stack.

The staleness of the newest point is the time from a sample's timestamp to the moment it can be queried,
plus up to one scrape interval (1 s) of waiting for the next sample; p50/p99 over the minute.
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
    staleness = []
    flux = ('r.metric == "up" and r.job == "test-app"')
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        rows = influx.points(cfg.load.influxdb, flux, start="-1m")
        if rows:
            newest = max(r["_time"].timestamp() for r in rows)
            staleness.append(time.time() - newest)
        time.sleep(0.2)
    producer.stop()
    consumer.stop()
    producer.close()
    q = statistics.quantiles(staleness, n=100)
    result = {"observations": len(staleness), "p50_s": statistics.median(staleness), "p99_s": q[98],
              "max_s": max(staleness), "poll_interval_s": 1, "lag_s": 1}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
