"""B7: `healthpipe export --step 1m` from the hot bucket, beside a plain influxdb-client `query_data_frame` of the
same range. (B8, the feature server, is bench/features.py.)

B7 data: `--series` series × `--hours` at `--every` s (default 2,000 × 24 h × 10 s = 17.28 M samples), written
straight into a fresh bucket as the consumer's own line protocol (this measures reading, not loading). Each
contender runs as its own process (wall time, peak RSS from wait4), alternating who goes first:
- export: `python -m healthpipe export --step 1m` (InfluxDB reduces each minute to its last sample; pandas puts it
  on the grid); samples/s = samples in the range / seconds;
- plain: `InfluxDBClient.query_api().query_data_frame()` of the raw range, the way a data scientist would start.
Completeness: the export's grid has every series at every minute, and its values equal the data set's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.support import RESULTS, clean_env
from healthpipe.common.times import iso
from tests.support.influx import temporary_bucket
from tests.support.pipeline import write_config
from tests.support.services import native_or_exit

QUERY = {"name": "bench", "promql": "bench_metric", "mode": "raw", "metric_type": "gauge"}


def fill(settings, series: int, start_ms: int, points: int, every_s: int) -> int:
    """The data set as line protocol (the consumer's shape), 5,000 lines a request over 2 connections."""
    def lines():
        for s in range(series):
            prefix = f"health_metrics,instance=node-{s},job=bench,metric=bench_metric,metric_type=gauge,zone=z{s % 7}"
            for i in range(points):
                yield f"{prefix} value={(s * 31 + i) % 1000 / 10!r} {start_ms + i * every_s * 1000}"

    def post(body: bytes) -> None:
        r = session.post(f"{settings.url}/api/v2/write", params={"org": settings.org, "bucket": settings.bucket,
                                                                   "precision": "ms"}, data=body, timeout=120,
                         headers={"Authorization": f"Token {settings.token.get_secret_value()}"})
        assert r.status_code == 204, r.text

    session = requests.Session()
    batch: list[str] = []
    with ThreadPoolExecutor(2) as pool:
        futures = []
        for line in lines():
            batch.append(line)
            if len(batch) == 5000:
                futures.append(pool.submit(post, "\n".join(batch).encode()))
                batch = []
                if len(futures) > 8:
                    futures.pop(0).result()
        if batch:
            futures.append(pool.submit(post, "\n".join(batch).encode()))
        for f in futures:
            f.result()
    return series * points


def timed(cmd: list[str], env: dict, log: Path, cwd: Path | None = None) -> dict:
    t0 = time.perf_counter()
    with log.open("ab") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    assert os.waitstatus_to_exitcode(status) == 0, f"{cmd[2:4]} failed: see {log}"
    return {"seconds": time.perf_counter() - t0, "peak_rss_mb": usage.ru_maxrss / 1024, "stdout": out}


PLAIN = """
import sys, time
from influxdb_client import InfluxDBClient
url, token, org, bucket, start, stop, zones = sys.argv[1:8]
with InfluxDBClient(url=url, token=token, org=org, timeout=3_600_000) as c:
    df = c.query_api().query_data_frame(
        f'from(bucket: "{bucket}") |> range(start: {start}, stop: {stop}) '
        '|> filter(fn: (r) => r._measurement == "health_metrics" and r._field == "value")'
        + ('' if zones == 'all' else f' |> filter(fn: (r) => r.zone == "{zones}")'))
rows = sum(len(d) for d in df) if isinstance(df, list) else len(df)
print(rows)
"""


def b7(services, args, tmp: Path) -> dict:
    points = int(args.hours * 3600 / args.every)
    end_ms = (int(time.time()) // 3600) * 3600 * 1000 - 3_600_000
    start_ms = end_ms - points * args.every * 1000
    rows = []
    # query_data_frame holds ~1.4 KB per sample (5.9 GB at 4.3 M): above 500 series it would not fit in 24 GB, so
    # it then reads one zone (every 7th series) of the same range, and the ratio compares samples per second
    whole = args.series <= 500
    with temporary_bucket(services.config().load.influxdb, "bench-export") as bucket:
        t0 = time.perf_counter()
        samples = fill(bucket, args.series, start_ms + args.every * 1000, points, args.every)
        fill_s = time.perf_counter() - t0
        print(json.dumps({"filled": samples, "seconds": fill_s}), flush=True)
        cfg = services.config(extract={"queries": [QUERY]}, influxdb={"bucket": bucket.bucket},
                              tiers={"hot": {"retention": "30d"}})
        config_file = write_config(cfg, tmp / "export.yaml")
        env = clean_env(HEALTHPIPE_LOAD__INFLUXDB__TOKEN=bucket.token.get_secret_value(),
                        HEALTHPIPE_PIPELINE__LOG_LEVEL="WARNING")
        for run in range(args.runs):
            row: dict = {"run": run, "samples": samples}
            order = ["export", "plain"] if run % 2 == 0 else ["plain", "export"]
            if args.no_plain:
                order.remove("plain")
            if args.code is not None:  # the same export from another checkout, same bucket, same run
                order.insert(run % 2, "export-base")
            for name in order:
                if name in ("export", "export-base"):
                    out = tmp / f"out-{run}"
                    # another checkout runs from its own directory: `python -m` puts the working directory first
                    # on sys.path, ahead of PYTHONPATH
                    code = args.code if name == "export-base" else None
                    r = timed([sys.executable, "-m", "healthpipe", "export", "--config", str(config_file), "--from",
                               iso(start_ms), "--to", iso(end_ms), "--step", "1m", "--out", str(out), "--overwrite"],
                              {**env, "PYTHONPATH": str(code)} if code else env, RESULTS / "export-bench.log", cwd=code)
                    summary = json.loads(r.pop("stdout").strip().splitlines()[-1])
                    assert summary["rows"] == args.series * (end_ms - start_ms) // 60_000, summary
                    row[name] = r | {"grid_rows": summary["rows"], "samples_per_s": samples / r["seconds"]}
                else:
                    r = timed([sys.executable, "-c", PLAIN, bucket.url, bucket.token.get_secret_value(), bucket.org,
                               bucket.bucket, iso(start_ms), iso(end_ms + 1), "all" if whole else "z0"], env,
                              RESULTS / "export-bench.log")
                    read = int(r.pop("stdout").strip())
                    assert read == (samples if whole else points * len(range(0, args.series, 7)))
                    row["plain"] = r | {"samples": read, "samples_per_s": read / r["seconds"]}
            if "plain" in row:
                row["ratio_export_vs_plain"] = row["export"]["samples_per_s"] / row["plain"]["samples_per_s"]
            if "export-base" in row:
                row["ratio_export_vs_base"] = row["export"]["samples_per_s"] / row["export-base"]["samples_per_s"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {"series": args.series, "hours": args.hours, "every_s": args.every, "samples": samples,
            "runs": rows, "export_samples_per_s": statistics.median(r["export"]["samples_per_s"] for r in rows),
            "export_peak_rss_mb_max": max(r["export"]["peak_rss_mb"] for r in rows),
            **({} if args.no_plain else {
                "plain_samples_per_s": statistics.median(r["plain"]["samples_per_s"] for r in rows),
                "plain_reads": "the whole range" if whole else "one zone of the range (every 7th series)",
                "plain_peak_rss_mb_max": max(r["plain"]["peak_rss_mb"] for r in rows),
                "ratio_export_vs_plain": statistics.median(r["ratio_export_vs_plain"] for r in rows)}),
            **({} if args.code is None else {
                "code": str(args.code),
                "export_base_samples_per_s": statistics.median(r["export-base"]["samples_per_s"] for r in rows),
                "export_base_peak_rss_mb_max": max(r["export-base"]["peak_rss_mb"] for r in rows)}),
            "targets": {"export_samples_per_s": 1_000_000, "export_rss_mb": 500}}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--hours", type=float, default=24)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--code", type=Path, default=None,
                        help="also export with this checkout's healthpipe (`git worktree add /tmp/base <commit>`)")
    parser.add_argument("--no-plain", action="store_true",
                        help="skip influxdb-client's query_data_frame (it holds ~1.4 KB a sample)")
    args = parser.parse_args()
    services = native_or_exit()
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hp-b7-") as tmp:
        result = {"b7_export": b7(services, args, Path(tmp))}
    (RESULTS / f"export-{int(time.time())}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "runs"} for k, v in result.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
