"""B11 freshness: from a sample's scrape to the moment it can be queried in InfluxDB, through remote write.

A real Prometheus 3 (the stack's cached build) scrapes the demo app and itself every second and remote-writes to
`healthpipe receive`; a consumer (batch age 0.5 s) stores what the receiver published into a bucket of its own.
The script queries InfluxDB every 100 ms for both jobs' `up` samples: the first time a sample shows up, its
freshness is that moment minus its timestamp (the scrape's start), so the figure includes up to one query period.

Each phase is one remote-write message (1.0, 2.0) and one queue config: Prometheus' defaults (the send deadline
5 s), and the same with a 1 s deadline (what `stack up --with remote-write` runs). With few series a shard's batch
never fills (2,000 samples), so the deadline, not the pipeline, decides when a sample leaves Prometheus.
After each phase `healthpipe verify` compares the stored `up` and `scrape_samples_scraped` with Prometheus 3's
query API, exactly: fast never means incomplete.

    python -m bench.receive_freshness --seconds 60
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from healthpipe.ops.stack.prometheus3 import V1, V2
from healthpipe.receive.service import ReceiveService
from tests.integration.test_receive_prometheus3 import pushed_config, stored_up_to, verify_exact
from tests.support import influx
from tests.support.pipeline import ConsumerThread
from tests.support.prometheus3 import Prometheus3
from tests.support.services import native_or_exit

RESULTS = Path(__file__).parent / "results"
PHASES = [(V2, None), (V2, "1s"), (V1, None), (V1, "1s")]  # (message, send deadline; None: Prometheus' default)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=60, help="measured per phase, after a 10 s warm-up")
    args = parser.parse_args()
    services = native_or_exit()
    cfg = pushed_config(services)
    cfg.consumer.batch_max_age_seconds = 0.5
    out = {"seconds": args.seconds, "consumer_batch_max_age_s": 0.5, "scrape_interval_s": 1, "phases": []}
    with influx.temporary_bucket(cfg.load.influxdb, "bench-rw-fresh") as bucket:
        cfg.load.influxdb = bucket
        receiver = ReceiveService(cfg)
        receiver.initialize()
        threading.Thread(target=receiver.serve, daemon=True).start()
        consumer = ConsumerThread(cfg)
        try:
            for message, deadline in PHASES:
                result = phase(cfg, receiver.port, message, deadline, args.seconds)
                print(json.dumps(result), flush=True)
                out["phases"].append(result)
        finally:
            consumer.stop()
            receiver.stop()
            receiver.close()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"receive-freshness-{int(time.time())}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")
    return 0


def phase(cfg, receiver_port: int, message: str, deadline: str | None, seconds: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="rw-fresh-") as folder:
        prometheus = Prometheus3(Path(folder), receiver_port, message, send_deadline=deadline)
        try:
            started_ms = int(time.time() * 1000)
            time.sleep(10)  # warm up: the first scrapes, the WAL watcher, the shards
            first_seen: dict[tuple[str, int], float] = {}  # (job, sample timestamp ms) -> first returned
            measuring_from = time.time()
            stop_at = time.monotonic() + seconds
            while time.monotonic() < stop_at:
                rows = influx.points(cfg.load.influxdb, 'r.metric == "up"', start="-1m")
                seen = time.time()
                for r in rows:
                    first_seen.setdefault((r["job"], round(r["_time"].timestamp() * 1000)), seen)
                time.sleep(0.1)
            end_ms = stored_up_to(cfg, prometheus)
            verify_exact(cfg, prometheus, started_ms, end_ms)
            failed = prometheus.value("prometheus_remote_storage_samples_failed_total")
        finally:
            prometheus.stop()
    # a sample already stored at the first query arrived before measuring began: its first sighting says nothing
    freshness = sorted(seen - ts / 1000 for (_, ts), seen in first_seen.items() if ts / 1000 > measuring_from)
    q = statistics.quantiles(freshness, n=100, method="inclusive")
    return {"message": "2.0" if message == V2 else "1.0", "batch_send_deadline": deadline or "5s (default)",
            "samples": len(freshness), "p50_s": round(statistics.median(freshness), 3), "p99_s": round(q[98], 3),
            "max_s": round(freshness[-1], 3), "verify_exact": True, "prometheus_samples_failed": failed}


if __name__ == "__main__":
    sys.exit(main())
