"""B8d: one `healthpipe features serve` process alone at `--series` series × 5 minutes: its RSS once ready, idle, and
while `--series` messages a second arrive (one a series a second, B8's deliveries), every 5 s for `--seconds`.

    python -m bench.features_memory [--series 10000] [--seconds 30] [--code /tmp/base]

B8 (bench.features) runs three servers and a consumer at once on 2 cores: their fills overlap, a server becomes
ready ~50 s after start with a backlog of deliveries to apply, and its store then holds ~6 minutes. Here the server
is alone and nothing is delivered before it is ready: the memory of exactly 5 minutes of `--series` series, then
how it moves under live deliveries. `--code DIR` runs another checkout's server (from its own directory: `python -m`
puts the working directory ahead of PYTHONPATH).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench.features import QUERY, Deliveries, _ready, history
from bench.support import RESULTS, status_mb
from healthpipe.common.kafka import ensure_topics
from tests.support.influx import temporary_bucket
from tests.support.pipeline import free_port, start_process, wait_until, write_config
from tests.support.services import native_or_exit


def memory(pid: int) -> dict[str, int]:
    return {field: int(status_mb(pid, field)) for field in ("VmRSS", "RssAnon", "RssFile")}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=30, help="of live deliveries after the server is ready")
    parser.add_argument("--code", type=Path, default=None, help="run this checkout's server instead")
    args = parser.parse_args()
    services = native_or_exit()
    now_ms = int(time.time()) * 1000
    samples: list[dict] = []
    with temporary_bucket(services.config().load.influxdb, "bench-b8d") as bucket, \
            tempfile.TemporaryDirectory(prefix="hp-b8d-") as tmp:
        cfg = services.config(extract={"queries": [QUERY]}, influxdb={"bucket": bucket.bucket},
                              transform={"valid_metrics": []}, features={"stream_span": "10m"})
        ensure_topics(cfg)
        history(cfg, args.series, now_ms)
        port = free_port()
        proc = start_process("features", write_config(cfg, Path(tmp) / "features.yaml"), cfg, "serve", "--port",
                             str(port), log=Path(tmp) / "features.log", code=args.code)
        try:
            t0 = time.monotonic()
            wait_until(lambda: _ready(port), 300, what="the feature server ready")
            ready_s = time.monotonic() - t0
            samples.append({"at": "ready", **memory(proc.pid)})
            time.sleep(5)
            samples.append({"at": "idle 5 s", **memory(proc.pid)})
            deliveries = Deliveries(cfg, args.series)
            deliveries.thread.start()
            for k in range(5, args.seconds + 1, 5):
                time.sleep(5)
                samples.append({"at": f"deliveries {k} s", **memory(proc.pid)})
            deliveries.stop.set()
        finally:
            proc.kill()
            proc.wait()
    result = {"series": args.series, "code": str(args.code) if args.code else None, "ready_after_s": round(ready_s, 1),
              "rss": samples, "peak_rss_mb": max(s["VmRSS"] for s in samples)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"features-memory-{int(time.time())}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
