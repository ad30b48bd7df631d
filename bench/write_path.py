"""B10: the InfluxDB write path, variant by variant, on the same pre-built line protocol (what the consumer sends).

Variants, each into a fresh bucket, in rotating order, `--runs` times:
- client: influxdb-client's SYNCHRONOUS write_api (what the loader used) vs a plain urllib3 POST;
- gzip: none vs level 1 (loopback: does compressing pay for itself?);
- body: 5,000 / 10,000 / 20,000 lines a request;
- connections: 1 / 2 / 3 at once.
Reported: samples/s, this process' CPU-s per million samples, influxd's CPU-s per million. Completeness: the
bucket holds every point after each variant.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import urllib3
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

from bench.support import RESULTS, influx_count, influxd_cpu_seconds
from healthpipe.common.messages import decode
from healthpipe.sinks.influx.transformer import DataTransformer
from tests.chaos.ledger import generate
from tests.support.influx import temporary_bucket
from tests.support.services import native_or_exit

VARIANTS = [  # (name, client, gzip level, lines per body, connections)
    ("urllib3 1conn 5k", "urllib3", 0, 5000, 1),
    ("client 1conn 5k", "client", 0, 5000, 1),
    ("urllib3 gzip1 1conn 5k", "urllib3", 1, 5000, 1),
    ("urllib3 1conn 10k", "urllib3", 0, 10000, 1),
    ("urllib3 1conn 20k", "urllib3", 0, 20000, 1),
    ("urllib3 2conn 10k", "urllib3", 0, 10000, 2),
    ("urllib3 2conn 20k", "urllib3", 0, 20000, 2),
    ("urllib3 2conn 5k", "urllib3", 0, 5000, 2),
    ("client 2conn 5k", "client", 0, 5000, 2),
    ("urllib3 3conn 5k", "urllib3", 0, 5000, 3),
]


def lines_for(n: int, seed: int) -> tuple[list[str], str]:
    ledger = generate(seed, max(1, n // 1000), 1000, per_message=1000)
    windows = [decode(v) for _, v, _ in ledger.messages]
    from healthpipe.common.config import TransformSettings

    return DataTransformer(TransformSettings(valid_metrics=[])).transform(windows).lines, ledger.run


def run_variant(settings, lines: list[str], client: str, level: int, size: int, connections: int) -> dict:
    bodies = ["\n".join(lines[i:i + size]).encode() for i in range(0, len(lines), size)]
    headers = {"Authorization": f"Token {settings.token.get_secret_value()}",
               "Content-Type": "text/plain; charset=utf-8"}
    url = f"{settings.url}/api/v2/write?org={settings.org}&bucket={settings.bucket}&precision=ms"
    pool = urllib3.PoolManager(maxsize=connections)
    influx = InfluxDBClient(url=settings.url, token=settings.token.get_secret_value(), org=settings.org,
                            enable_gzip=bool(level), retries=False)
    write_api = influx.write_api(write_options=SYNCHRONOUS)

    def post(nth: int) -> None:
        for body in bodies[nth::connections]:
            if client == "client":
                write_api.write(settings.bucket, settings.org, body, write_precision=WritePrecision.MS)
                continue
            h = headers
            if level:
                body, h = gzip.compress(body, compresslevel=level), {**headers, "Content-Encoding": "gzip"}
            r = pool.request("POST", url, body=body, headers=h)
            assert r.status == 204, r.data[:200]

    c0, i0, t0 = time.process_time(), influxd_cpu_seconds(), time.perf_counter()
    with ThreadPoolExecutor(connections) as ex:
        list(ex.map(post, range(connections)))
    seconds, cpu, icpu = time.perf_counter() - t0, time.process_time() - c0, influxd_cpu_seconds() - i0
    influx.close()
    n = len(lines)
    return {"samples_per_s": n / seconds, "client_cpu_s_per_million": cpu / n * 1e6,
            "influxd_cpu_s_per_million": icpu / n * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    services = native_or_exit()
    RESULTS.mkdir(exist_ok=True)
    results: dict[str, list[dict]] = {v[0]: [] for v in VARIANTS}
    for run in range(args.runs):
        order = VARIANTS[run % len(VARIANTS):] + VARIANTS[:run % len(VARIANTS)]
        for name, client, level, size, connections in order:
            lines, tag = lines_for(args.samples, seed=7000 + run * 100 + VARIANTS.index(
                (name, client, level, size, connections)))
            with temporary_bucket(services.config().load.influxdb, "bench-wp") as bucket:
                row = run_variant(bucket, lines, client, level, size, connections)
                assert influx_count(bucket, f'r.run == "{tag}"') == len(lines), f"{name}: incomplete"
            results[name].append(row)
            print(json.dumps({"run": run, "variant": name, **row}), flush=True)
    summary = {name: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for name, rows in results.items()}
    (RESULTS / f"write-path-{int(time.time())}.json").write_text(json.dumps({"summary": summary,
                                                                              "runs": results}, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
