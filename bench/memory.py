"""Memory under a large backlog: `healthpipe consumer` working through a topic of `--samples` (10,000,000)
samples. RSS is sampled every 0.5 s; it must stay flat (batches, librdkafka's capped prefetch and the writers'
batches are all that is held), whatever the backlog. Completeness: every point counted in InfluxDB, every
offset committed.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time

from bench.support import RESULTS, clean_env, cpu_seconds, influx_count, peak_rss_mb, process_command, status_mb
from healthpipe.common.kafka import ensure_topics
from tests.chaos.ledger import generate
from tests.support import kafka
from tests.support.influx import temporary_bucket
from tests.support.pipeline import write_config
from tests.support.services import native_or_exit


def prefill(cfg, n_samples: int) -> None:
    """n_samples as 1,000-sample messages, produced 100 series (100,000 samples) at a time to bound our own memory."""
    ensure_topics(cfg)
    for chunk in range(n_samples // 100_000):
        kafka.produce(cfg, cfg.kafka.topic, generate(9000 + chunk, 100, 1000, per_message=1000).messages)


def progress(cfg) -> float:
    committed = kafka.committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic)
    ends = kafka.end_offsets(cfg, cfg.kafka.topic)
    return sum(max(committed[p], 0) for p in ends) / max(1, sum(ends.values()))


def run_consumer(cfg, bucket, samples_total: int) -> dict:
    """One consumer from the first offset to the last commit, RSS sampled every 0.5 s; every point counted."""
    config_file = write_config(cfg, RESULTS / f"memory-{cfg.kafka.group_id}.yaml")
    env = clean_env(HEALTHPIPE_LOAD__INFLUXDB__TOKEN=bucket.token.get_secret_value(),
                    HEALTHPIPE_PIPELINE__LOG_LEVEL="WARNING")
    t0 = time.perf_counter()
    proc = subprocess.Popen(process_command("consumer", config_file), env=env,
                            stdout=subprocess.DEVNULL, stderr=open(RESULTS / "memory-consumer.log", "ab"))  # noqa: SIM115
    samples: list[tuple[float, float, float]] = []  # (seconds, progress, rss MB)
    try:
        done = 0.0
        while done < 1.0:  # committed == end offset on every partition
            time.sleep(0.5)
            assert proc.poll() is None, "consumer died; see bench/results/memory-consumer.log"
            done = progress(cfg)
            samples.append((time.perf_counter() - t0, done, status_mb(proc.pid, "VmRSS")))
        seconds = time.perf_counter() - t0
        cpu, peak = cpu_seconds(proc.pid), peak_rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    loaded = influx_count(bucket, "true")
    assert loaded == samples_total, f"{loaded} of {samples_total} points in InfluxDB"

    def rss_at(fraction: float) -> float:
        return next(rss for _, done, rss in samples if done >= fraction)

    return {"batch_size": cfg.load.influxdb.batch_size, "samples": samples_total, "seconds": seconds,
            "samples_per_s": samples_total / seconds, "cpu_s_per_million": cpu / samples_total * 1e6,
            "peak_rss_mb": peak,
            "rss_mb_at_progress": {f"{int(f * 100)}%": rss_at(f) for f in (0.1, 0.25, 0.5, 0.75, 0.9)},
            "rss": samples}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=10_000_000)
    parser.add_argument("--batch-size", type=int, nargs="*", default=[],
                        help="load.influxdb.batch_size values to compare on the same topic (default: the default)")
    args = parser.parse_args()
    services = native_or_exit()
    RESULTS.mkdir(exist_ok=True)
    base = services.config()
    t = time.perf_counter()
    prefill(base, args.samples)
    print(f"prefilled {args.samples:,} samples in {time.perf_counter() - t:.0f} s", flush=True)
    results = []
    for size in args.batch_size or [base.load.influxdb.batch_size]:
        with temporary_bucket(base.load.influxdb, "bench-memory") as bucket:
            cfg = base.model_copy(update={
                "load": base.load.model_copy(update={"influxdb": bucket.model_copy(update={"batch_size": size})}),
                "kafka": base.kafka.model_copy(update={"group_id": f"{base.kafka.group_id}-b{size}"})})
            results.append(run_consumer(cfg, bucket, args.samples))
        print(json.dumps({k: v for k, v in results[-1].items() if k != "rss"}, indent=2), flush=True)
    (RESULTS / f"memory-{int(time.time())}.json").write_text(json.dumps({"results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
