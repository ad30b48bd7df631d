"""B3: the sustained end-to-end rate, Prometheus → producer → Kafka → consumer → InfluxDB, both processes at once.

B1's kind of data set (by default 2,000 series × 4 h every 10 s = 2.88 M samples, promtool-built blocks
served by a Prometheus of its own) is what an outage leaves behind: `healthpipe producer` backfills it while
`healthpipe consumer` loads it, as two real processes competing with Kafka, InfluxDB and Prometheus for the
same 2 cores. The rate is samples divided by the time from starting both to the last sample being countable
in InfluxDB; it is the most the pipeline sustains, since a live load at any lower rate keeps up.
Completeness: the count in InfluxDB equals the data set.

`--code DIR` runs the two processes from another checkout (say `git worktree add /tmp/base <commit>`) with this
script's data set and services, so an older commit is measured in the same session, side by side: its config
file then holds only the keys set here (older code refuses keys it does not know).
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.producer import QUERY, BenchPrometheus, add_data_set_args, data_set_span
from bench.support import RESULTS, clean_env, config_for, cpu_seconds, influx_count, peak_rss_mb, process_command
from tests.support.influx import temporary_bucket
from tests.support.services import native_or_exit


def one_run(services, prom: BenchPrometheus, start_s: int, tmp: Path, code: Path | None = None) -> dict:
    cfg = services.config(extract={"prometheus_url": prom.url, "queries": [QUERY.model_dump()], "lag_seconds": 1,
                                   "max_backfill": f"{int(time.time()) - start_s + 60}s"},
                          transform={"valid_metrics": [QUERY.promql]})
    with temporary_bucket(cfg.load.influxdb, "bench-e2e") as bucket:
        cfg = cfg.model_copy(update={"load": cfg.load.model_copy(update={"influxdb": bucket})})
        config_file = config_for(cfg, tmp / "e2e.yaml", code)
        env = clean_env(HEALTHPIPE_LOAD__INFLUXDB__TOKEN=bucket.token.get_secret_value(),
                        HEALTHPIPE_PIPELINE__LOG_LEVEL="WARNING")
        if code is not None:
            env["PYTHONPATH"] = str(code)  # ahead of the editable install of this checkout
        procs = {}
        t0 = time.perf_counter()
        for name in ("consumer", "producer"):
            log = open(RESULTS / f"e2e-{name}.log", "ab")  # noqa: SIM115
            procs[name] = subprocess.Popen(process_command(name, config_file, code),
                                           env=env, cwd=code, stdout=subprocess.DEVNULL, stderr=log)
        try:
            loaded = 0
            while loaded < prom.samples:
                time.sleep(0.5)
                for name, p in procs.items():
                    assert p.poll() is None, f"{name} died; see bench/results/e2e-{name}.log"
                loaded = influx_count(bucket, 'r.job == "bench"')
            seconds = time.perf_counter() - t0
            usage = {name: {"cpu_s_per_million": cpu_seconds(p.pid) / prom.samples * 1e6,
                            "peak_rss_mb": peak_rss_mb(p.pid)} for name, p in procs.items()}
        finally:
            for p in procs.values():
                p.send_signal(signal.SIGTERM)
            for p in procs.values():
                p.wait(60)
    assert loaded == prom.samples, f"{loaded} of {prom.samples} points in InfluxDB"
    return {"samples": prom.samples, "seconds": seconds, "samples_per_s": prom.samples / seconds, **usage}


def main() -> int:
    parser = argparse.ArgumentParser()
    add_data_set_args(parser, series=2000, hours=4)
    parser.add_argument("--code", type=Path, help="run producer and consumer from this checkout instead")
    args = parser.parse_args()
    services = native_or_exit()
    RESULTS.mkdir(exist_ok=True)
    n_points, start_s, _ = data_set_span(args)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hp-b3-") as tmp:
        prom = BenchPrometheus(Path(tmp), args.series, start_s + args.every, n_points, args.every)
        try:
            for _ in range(args.runs):
                rows.append(one_run(services, prom, start_s, Path(tmp), args.code))
                print(json.dumps(rows[-1]), flush=True)
        finally:
            prom.close()
    print(json.dumps({"code": str(args.code or "."), "series": args.series, "points_per_series": n_points,
                      "runs": args.runs, "median_consumer_cpu_s_per_million": statistics.median(
                          r["consumer"]["cpu_s_per_million"] for r in rows),
                      "median_producer_cpu_s_per_million": statistics.median(
                          r["producer"]["cpu_s_per_million"] for r in rows),
                      "median_samples_per_s": statistics.median(r["samples_per_s"] for r in rows)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
