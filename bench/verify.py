"""B5: `healthpipe verify` over a known data set: 2,000 series × 6 h every 10 s (4.32 M samples) by default.

The data set is promtool-built blocks served by a Prometheus of its own (as B1), loaded into a fresh bucket by
the real pipeline (producer backfill + consumer processes, as B3). Then `python -m healthpipe verify --json` runs as its
own process, twice per run:

- exact: nothing missing (target: ≤ 30 s, ≤ 300 MB RSS on this machine);
- one hour deleted in 10 series (InfluxDB's delete API): verify must name exactly those 10 series and the
  3,600 samples (target: ≤ 45 s); `--exact-only` skips it.

Against cardinality (B13, issue #29): the same 1 M samples over more and more series, e.g.
    python -m bench.verify --exact-only --series 100000 --hours 0.02778 --runs 1   # 10 points a series

`--whole-too` also runs the exact case with every window screened whole (extract.max_series_per_read above the
series count: verify before it screened in groups of series), alternating with the default, for a side-by-side ratio.

Reported per case: wall seconds, peak RSS of the verify process (wait4's ru_maxrss), and verify's own time split
(Prometheus, InfluxDB, Kafka, compare) from its --json `timings`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.producer import QUERY, BenchPrometheus, add_data_set_args, data_set_span
from bench.support import RESULTS, clean_env, influx_count, process_command
from healthpipe.common.times import iso
from tests.support.influx import temporary_bucket
from tests.support.pipeline import write_config
from tests.support.services import native_or_exit


def load(cfg, config_file: Path, samples: int) -> float:
    """The real pipeline, producer + consumer processes, until every sample is countable in InfluxDB."""
    env = clean_env(HEALTHPIPE_LOAD__INFLUXDB__TOKEN=cfg.load.influxdb.token.get_secret_value(),
                    HEALTHPIPE_PIPELINE__LOG_LEVEL="WARNING")
    procs = [subprocess.Popen(process_command(name, config_file), env=env,
                              stdout=subprocess.DEVNULL, stderr=open(RESULTS / f"verify-load-{name}.log", "ab"))  # noqa: SIM115
             for name in ("consumer", "producer")]
    t0 = time.perf_counter()
    try:
        while influx_count(cfg.load.influxdb, 'r.job == "bench"', start="-2d") < samples:
            assert all(p.poll() is None for p in procs), "a pipeline process died; see bench/results/verify-load-*"
            time.sleep(1)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
    return time.perf_counter() - t0


def run_verify(cfg, config_file: Path, start_ms: int, end_ms: int, max_series_per_read: int | None = None) -> dict:
    env = clean_env(HEALTHPIPE_LOAD__INFLUXDB__TOKEN=cfg.load.influxdb.token.get_secret_value(),
                    HEALTHPIPE_PIPELINE__LOG_LEVEL="WARNING")
    if max_series_per_read:
        env["HEALTHPIPE_EXTRACT__MAX_SERIES_PER_READ"] = str(max_series_per_read)
    out = RESULTS / "verify-out.json"
    t0 = time.perf_counter()
    with out.open("w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "healthpipe", "verify", "--config", str(config_file),
                                 "--from", iso(start_ms),
                                 "--to", iso(end_ms), "--json"], env=env, stdout=f, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    doc = json.loads(out.read_text())
    return {"seconds": seconds, "exit": os.waitstatus_to_exitcode(status), "peak_rss_mb": usage.ru_maxrss / 1024,
            "missing": doc["missing"], "extra": doc["extra"], "mismatched": doc["mismatched"],
            "expected": sum(q["expected"] for q in doc["queries"]),
            "series_with_differences": sum(len(q["series"]) for q in doc["queries"]), "timings": doc["timings"]}


def delete_hour(settings, start_ms: int, series: int, n_series: int) -> None:
    for s in range(0, n_series, n_series // series):
        requests.post(f"{settings.url}/api/v2/delete", params={"org": settings.org, "bucket": settings.bucket},
                      headers={"Authorization": f"Token {settings.token.get_secret_value()}"}, timeout=60,
                      json={"start": iso(start_ms + 1), "stop": iso(start_ms + 3_600_000),
                            "predicate": f'instance="node-{s}"'}).raise_for_status()


def main() -> int:
    parser = argparse.ArgumentParser()
    add_data_set_args(parser, series=2000, hours=6)
    parser.add_argument("--exact-only", action="store_true",
                        help="skip the one-hour gap case (for data sets under 3 hours: bench.scale's verify curve)")
    parser.add_argument("--whole-too", action="store_true",
                        help="also verify with every window screened whole (max_series_per_read above the series "
                             "count), alternating with the default: groups against whole side by side")
    parser.set_defaults(runs=1)
    args = parser.parse_args()
    services = native_or_exit()
    RESULTS.mkdir(exist_ok=True)
    n_points, start_s, end_s = data_set_span(args)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hp-b5-") as tmp, \
            temporary_bucket(services.config().load.influxdb, "bench-verify") as bucket:
        prom = BenchPrometheus(Path(tmp), args.series, start_s + args.every, n_points, args.every)
        try:
            cfg = services.config(extract={"prometheus_url": prom.url, "queries": [QUERY.model_dump()],
                                           "lag_seconds": 1, "max_backfill": f"{int(time.time()) - start_s + 60}s"},
                                  transform={"valid_metrics": [QUERY.promql]}, influxdb={"bucket": bucket.bucket})
            config_file = write_config(cfg, Path(tmp) / "verify.yaml")
            load_s = load(cfg, config_file, prom.samples)
            print(json.dumps({"loaded": prom.samples, "load_seconds": load_s}), flush=True)
            start_ms, end_ms = start_s * 1000, (start_s + n_points * args.every) * 1000
            for run in range(args.runs):
                row: dict = {"run": run}
                cases = [("exact", None), ("exact_whole", args.series + 1)] if args.whole_too else [("exact", None)]
                for name, per_read in cases if run % 2 == 0 else cases[::-1]:
                    row[name] = run_verify(cfg, config_file, start_ms, end_ms, per_read)
                    assert row[name]["exit"] == 0 and row[name]["expected"] == prom.samples, row[name]
                rows.append(row)
                print(json.dumps(rows[-1]), flush=True)
            hole = (start_s // 3600 + 2) * 3_600_000  # a whole hour inside the data set
            if not args.exact_only:
                delete_hour(cfg.load.influxdb, hole, 10, args.series)
            for row in rows if not args.exact_only else []:
                gap = run_verify(cfg, config_file, start_ms, end_ms)
                assert gap["exit"] == 1 and gap["missing"] == 10 * 360 and gap["series_with_differences"] == 10, gap
                row["one_hour_missing_in_10_series"] = gap
                print(json.dumps(gap), flush=True)
        finally:
            prom.close()
    summary = {"series": args.series, "hours": args.hours, "every_s": args.every, "samples": prom.samples,
               "runs": len(rows),
               "exact_median_s": statistics.median(r["exact"]["seconds"] for r in rows),
               "exact_peak_rss_mb_max": max(r["exact"]["peak_rss_mb"] for r in rows),
               **({"exact_whole_median_s": statistics.median(r["exact_whole"]["seconds"] for r in rows),
                   "exact_whole_peak_rss_mb_max": max(r["exact_whole"]["peak_rss_mb"] for r in rows)}
                  if args.whole_too else {}),
               "load_seconds": load_s,
               "gap_median_s": None if args.exact_only else
               statistics.median(r["one_hour_missing_in_10_series"]["seconds"] for r in rows),
               "gap_peak_rss_mb_max": None if args.exact_only else
               max(r["one_hour_missing_in_10_series"]["peak_rss_mb"] for r in rows),
               "target_exact_s": 30, "target_gap_s": 45, "target_rss_mb": 300}
    (RESULTS / f"verify-{int(time.time())}.json").write_text(json.dumps({"summary": summary, "runs": rows}, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
