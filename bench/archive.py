"""B6: the archive (cold tier) beside the InfluxDB consumer, on the same pre-filled topic (B2's data).

Each run fills a topic with `--samples` samples (B2's ledger: 1,000-sample messages, random values with three
decimals), then runs, one after the other and alternating who goes first, `python -m healthpipe consumer` (into a fresh
bucket) and `python -m healthpipe archive` (into a fresh directory), each until its group has committed every offset:
samples/s, CPU-s per million samples, peak RSS. Completeness: the archive is read back whole with pyarrow and
must equal the ledger, row for row.

Size: Parquet bytes per sample of that data, of the demo pipeline's own data (the default queries over the last
2 hours of the stack's Prometheus), and of synthetic demo-like data (`up` = 1, slowly moving rates and latencies,
1-second samples), each against the topic's own zstd bytes per sample (the Kafka log segments on disk).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.run import b2_consumer, prefill
from bench.support import (
    RESULTS,
    ROOT,
    clean_env,
    compile_bytecode,
    cpu_seconds,
    peak_rss_mb,
    process_command,
    run_until_committed,
)
from healthpipe.common.kafka import ensure_topics
from healthpipe.common.messages import SeriesWindow, headers
from healthpipe.ops.stack import STACK_DIR, kafka_brokers
from healthpipe.producer.service import ProducerService
from healthpipe.sinks.archive.store import Store
from tests.integration.test_archive import archived, read, truth
from tests.support import kafka
from tests.support.influx import temporary_bucket
from tests.support.pipeline import write_config
from tests.support.services import native_or_exit

# Under a backlog files are cut by rows; the backlog's last files wait for their age, and that wait is part of
# the measured time (at 5 s it was half of a 2 M-sample run: py-spy showed the work done 3.6 s in, of 9.7 s)
FILE_AGE_S = 1


def run_archive(cfg, tmp: Path, transactional: bool = False, code: Path | None = None) -> dict:
    """`healthpipe archive` as its own process until it has committed every offset; `code`: run it from another
    checkout (one new enough to know every archive key written here)."""
    config_file = write_config(cfg, tmp / "archive.yaml")
    compile_bytecode(code or ROOT)
    env = clean_env(HEALTHPIPE_LOAD__INFLUXDB__TOKEN=cfg.load.influxdb.token.get_secret_value(),
                    HEALTHPIPE_PIPELINE__LOG_LEVEL="WARNING")
    if code is not None:
        env["PYTHONPATH"] = str(code)  # ahead of the editable install of this checkout
    t0 = time.perf_counter()
    proc = subprocess.Popen(process_command("archive", config_file, code), env=env, cwd=code,
                            stdout=subprocess.DEVNULL, stderr=open(RESULTS / "archive-bench.log", "ab"))  # noqa: SIM115
    try:
        run_until_committed(proc, cfg, cfg.archive.group_id, "archive (see bench/results/archive-bench.log)",
                            transactional=transactional)
        seconds = time.perf_counter() - t0
        cpu, rss = cpu_seconds(proc.pid), peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(60)
    return {"seconds": seconds, "cpu_s": cpu, "peak_rss_mb": rss}


def parquet_bytes(cfg) -> int:
    return sum(size for path, size in Store(cfg.archive).list() if path.endswith(".parquet"))


def topic_bytes(topic: str) -> int:
    """The topic's log segments on disk (the native stack's broker 1; every replica holds the same)."""
    data = STACK_DIR / "kafka" / f"{kafka_brokers()}-broker" / "node-1" / "data"
    return sum(f.stat().st_size for d in data.glob(f"{topic}-*") for f in d.glob("*.log"))


def demo_like(run: str, series: int, points: int, start_ms: int) -> list:
    """Messages shaped like the demo pipeline's: up (constant 1) and rates/latencies moving slowly."""
    rng = random.Random(7)
    messages = []
    for s in range(series):
        kind = ("up", "request_rate", "latency_p95")[s % 3]
        labels = {"__name__": "up", "job": "demo", "instance": f"host-{s}:8000", "run": run} if kind == "up" else \
            {"job": "demo", "instance": f"host-{s}:8000", "path": f"/api/{s % 5}", "run": run}
        level = rng.uniform(1, 50)
        samples = []
        for i in range(points):
            if kind == "up":
                v = "1"
            else:
                level = max(0.001, level * (1 + rng.gauss(0, 0.01)))
                v = repr(round(level, 4) if kind == "request_rate" else round(level / 100, 6))
            samples.append((start_ms + i * 1000, v))
        for i in range(0, points, 1000):
            w = SeriesWindow(kind if kind != "up" else "availability", "gauge", labels, start_ms, start_ms + points,
                             samples[i:i + 1000])
            messages.append((w.key, w.to_json(), headers()))
    return messages


def one_run(services, n: int, run: int, tmp: Path) -> dict:
    cfg, ledger = prefill(services, n, seed=5000 + run)
    cfg = services.config(kafka={"topic": cfg.kafka.topic, "dead_letter_topic": cfg.kafka.dead_letter_topic,
                                 "watermark_topic": cfg.kafka.watermark_topic, "group_id": cfg.kafka.group_id},
                          archive={"target": str(tmp / f"archive-{run}"), "max_file_rows": 100_000,
                                   "max_file_age_seconds": FILE_AGE_S})
    row: dict = {"run": run, "samples": n}
    for name in (["consumer", "archive"] if run % 2 == 0 else ["archive", "consumer"]):
        if name == "consumer":
            with temporary_bucket(cfg.load.influxdb, "bench-arch") as bucket:
                target = cfg.model_copy(update={"load": cfg.load.model_copy(update={"influxdb": bucket})})
                row["consumer"] = b2_consumer(target, ledger, RESULTS)
        else:
            row["archive"] = run_archive(cfg, tmp)
    assert archived(cfg, ledger) == truth(ledger), "archive incomplete or with extra rows"
    row["archive"] |= {"samples_per_s": n / row["archive"]["seconds"],
                       "cpu_s_per_million": row["archive"]["cpu_s"] / n * 1e6,
                       "parquet_bytes_per_sample": parquet_bytes(cfg) / n,
                       "topic_bytes_per_sample": topic_bytes(cfg.kafka.topic) / n}
    row["ratio_archive_vs_consumer"] = row["archive"]["samples_per_s"] / row["consumer"]["samples_per_s"]
    shutil.rmtree(tmp / f"archive-{run}", ignore_errors=True)
    return row


def demo_size(services, tmp: Path, series: int = 300, points: int = 3600) -> dict:
    """Bytes per sample, Parquet against the topic, of synthetic demo-like data and of the demo pipeline's own
    data (the default queries over the last 2 hours the stack's Prometheus holds)."""
    out = {}
    synthetic = services.config(archive={"target": str(tmp / "archive-synthetic"), "max_file_rows": 500_000,
                                         "max_file_age_seconds": 5})
    ensure_topics(synthetic)
    kafka.produce(synthetic, synthetic.kafka.topic,
                  demo_like("demo-size", series, points, int(time.time() * 1000) - 86_400_000))
    real = services.config(extract={"max_backfill": "2h"},
                           archive={"target": str(tmp / "archive-demo"), "max_file_rows": 500_000,
                                    "max_file_age_seconds": 5})
    producer = ProducerService(real, max_windows_per_cycle=10_000)
    producer.initialize()
    producer.run_single_cycle()
    producer.close()
    for name, cfg in (("synthetic", synthetic), ("demo", real)):
        run_archive(cfg, tmp, transactional=name == "demo")  # the producer's topic ends in markers
        n = read(Store(cfg.archive)).num_rows
        out[name] = {"samples": n, "parquet_bytes_per_sample": parquet_bytes(cfg) / n,
                     "topic_bytes_per_sample": topic_bytes(cfg.kafka.topic) / n}
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    services = native_or_exit()
    RESULTS.mkdir(exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hp-b6-") as tmp:
        for run in range(args.runs):
            rows.append(one_run(services, args.samples, run, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
        demo = demo_size(services, Path(tmp))
    summary = {
        "samples": args.samples, "runs": len(rows),
        "archive_samples_per_s": statistics.median(r["archive"]["samples_per_s"] for r in rows),
        "consumer_samples_per_s": statistics.median(r["consumer"]["samples_per_s"] for r in rows),
        "ratio_archive_vs_consumer": statistics.median(r["ratio_archive_vs_consumer"] for r in rows),
        "archive_cpu_s_per_million": statistics.median(r["archive"]["cpu_s_per_million"] for r in rows),
        "archive_peak_rss_mb_max": max(r["archive"]["peak_rss_mb"] for r in rows),
        "ledger_parquet_bytes_per_sample": statistics.median(r["archive"]["parquet_bytes_per_sample"] for r in rows),
        "ledger_topic_bytes_per_sample": statistics.median(r["archive"]["topic_bytes_per_sample"] for r in rows),
        "demo_samples": demo["demo"]["samples"],
        "demo_parquet_bytes_per_sample": demo["demo"]["parquet_bytes_per_sample"],
        "demo_topic_bytes_per_sample": demo["demo"]["topic_bytes_per_sample"],
        "synthetic_parquet_bytes_per_sample": demo["synthetic"]["parquet_bytes_per_sample"],
        "synthetic_topic_bytes_per_sample": demo["synthetic"]["topic_bytes_per_sample"],
        "targets": {"ratio": 1.5, "rss_mb": 300, "demo_bytes_per_sample": 3},
    }
    assert not math.isnan(summary["ratio_archive_vs_consumer"])
    (RESULTS / f"archive-{int(time.time())}.json").write_text(json.dumps({"summary": summary, "runs": rows}, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
