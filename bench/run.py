"""healthpipe benchmarks against the real native stack. `make bench` (quick) or `make bench-full`.

B0  ceilings: InfluxDB ingesting the consumer's own line protocol over plain HTTP (same batch size and
    compression); Kafka consume of the same messages with a bare confluent-kafka loop.
B2  consumer: a pre-filled topic → InfluxDB until every offset is committed: samples/s, CPU seconds per
    million samples, peak RSS; ratio against the B0 InfluxDB ceiling measured in the same run.
Every result checks completeness (points in InfluxDB, offsets committed): speed never comes from dropping
data. Results are appended to bench/results/ as JSON and summarised for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import requests
from confluent_kafka import Consumer, KafkaError, TopicPartition

from bench.support import (
    RESULTS,
    ROOT,
    check_sample_of_points,
    clean_env,
    compile_bytecode,
    config_for,
    cpu_seconds,
    influx_count,
    influxd_cpu_seconds,
    influxd_settled,
    peak_rss_mb,
    process_command,
    run_until_committed,
)
from healthpipe.common.kafka import ensure_topics
from healthpipe.common.messages import decode
from healthpipe.ops.stack.paths import CACHE, SCRIPTS
from healthpipe.sinks.influx.transformer import DataTransformer
from tests.chaos.ledger import generate
from tests.support import kafka
from tests.support.influx import temporary_bucket
from tests.support.services import native_or_exit

TELEGRAF_VERSION = "1.37.2"


def prefill(services, n_samples: int, seed: int):
    n_series = max(1, n_samples // 1000)
    cfg = services.config(consumer={"metrics_port": 0})
    ensure_topics(cfg)
    ledger = generate(seed, n_series, 1000, per_message=1000)
    kafka.produce(cfg, cfg.kafka.topic, ledger.messages)
    return cfg, ledger


def run_count(cfg, run: str) -> int:
    return influx_count(cfg.load.influxdb, f'r.run == "{run}"')


def b0_influx_ceiling(cfg, n_samples: int, seed: int, connections: int = 1) -> dict:
    """Pre-built line protocol (what the consumer would send) POSTed in batch_size bodies, no gzip (as the
    consumer), over `connections` connections at once (the consumer writes over consumer.writers)."""
    ledger = generate(seed, max(1, n_samples // 1000), 1000, per_message=1000)
    windows = [decode(v) for _, v, _ in ledger.messages]
    lines = DataTransformer(cfg.transform.model_copy(update={"valid_metrics": []})).transform(windows).lines
    s = cfg.load.influxdb
    size = s.batch_size
    bodies = ["\n".join(lines[i:i + size]).encode() for i in range(0, len(lines), size)]
    headers = {"Authorization": f"Token {s.token.get_secret_value()}", "Content-Type": "text/plain"}

    def post_every(nth: int) -> None:
        session = requests.Session()
        for body in bodies[nth::connections]:
            r = session.post(f"{s.url}/api/v2/write", params={"org": s.org, "bucket": s.bucket, "precision": "ms"},
                             data=body, headers=headers, timeout=60)
            assert r.status_code == 204, r.text

    settled = influxd_settled()  # a quiet InfluxDB for every contender
    t0, i0 = time.perf_counter(), influxd_cpu_seconds()
    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(post_every, range(connections)))
    seconds = time.perf_counter() - t0
    influxd_cpu = influxd_cpu_seconds() - i0
    assert run_count(cfg, ledger.run) == len(ledger.truth), "ceiling run incomplete"
    return {"samples": len(lines), "connections": connections, "seconds": seconds, "influxd_settle_s": settled,
            "samples_per_s": len(lines) / seconds, "influxd_cpu_s_per_million": influxd_cpu / len(lines) * 1e6}


def b0_kafka_consume(cfg, n_messages: int) -> dict:
    """A bare confluent-kafka loop reading the pre-filled topic (read_committed), no processing."""
    consumer = Consumer({**cfg.kafka.as_librdkafka_dict(), "group.id": f"b0-{uuid.uuid4().hex[:6]}",
                         "enable.partition.eof": True, "isolation.level": "read_committed"})
    meta = consumer.list_topics(cfg.kafka.topic, timeout=30).topics[cfg.kafka.topic]
    consumer.assign([TopicPartition(cfg.kafka.topic, p, 0) for p in meta.partitions])
    pending, seen = set(meta.partitions), 0
    t0 = time.perf_counter()
    while pending:
        for msg in consumer.consume(1000, 1.0):
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                continue
            seen += 1
    seconds = time.perf_counter() - t0
    consumer.close()
    assert seen == n_messages, (seen, n_messages)
    return {"messages": seen, "seconds": seconds, "messages_per_s": seen / seconds}


def _until_committed(name: str, command: list[str], env: dict, cfg, group: str, ledger, tmp: Path,
                     cwd: Path | None = None) -> dict:
    """Run `command` from start to every offset of `group` committed, then stop it and count its points.
    Both sides of B2 are measured by this one function, so they are measured the same way."""
    settled = influxd_settled()  # a quiet InfluxDB for every contender
    t0, i0 = time.perf_counter(), influxd_cpu_seconds()
    proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=open(tmp / f"{name}.log", "ab"))  # noqa: SIM115
    try:
        run_until_committed(proc, cfg, group, f"{name} (see bench/results/{name}.log)")
        seconds = time.perf_counter() - t0
        cpu, rss, influxd_cpu = cpu_seconds(proc.pid), peak_rss_mb(proc.pid), influxd_cpu_seconds() - i0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    n = len(ledger.truth)
    loaded = run_count(cfg, ledger.run)
    assert loaded == n, f"{name} incomplete: {loaded} of {n} points in InfluxDB"
    compared = check_sample_of_points(cfg.load.influxdb, ledger, seed=n)
    return {"samples": n, "seconds": seconds, "samples_per_s": n / seconds, "points_compared_whole": compared,
            "influxd_settle_s": settled,
            "cpu_s_per_million": cpu / n * 1e6, "peak_rss_mb": rss, "influxd_cpu_s_per_million": influxd_cpu / n * 1e6}


def b2_consumer(cfg, ledger, tmp: Path, writers: int | None = None, code: Path | None = None,
                group: str | None = None) -> dict:
    """`healthpipe consumer` as its own process, from a full topic to every offset committed; `code`: run it
    from another checkout (bench/steps.py), `group`: under a consumer group of its own."""
    if writers is not None or group is not None:
        group = group or f"{cfg.kafka.group_id}-w{writers}"
        consumer = cfg.consumer if writers is None else cfg.consumer.model_copy(update={"writers": writers})
        cfg = cfg.model_copy(update={"consumer": consumer,
                                     "kafka": cfg.kafka.model_copy(update={"group_id": group})})
    config_file = config_for(cfg, tmp / f"{cfg.kafka.group_id}.yaml", code)
    compile_bytecode(code or ROOT)
    env = clean_env(HEALTHPIPE_LOAD__INFLUXDB__TOKEN=cfg.load.influxdb.token.get_secret_value(),
                    HEALTHPIPE_PIPELINE__LOG_LEVEL="WARNING")
    if code is not None:
        env["PYTHONPATH"] = str(code)  # ahead of the editable install of this checkout
    return _until_committed(f"consumer-w{cfg.consumer.writers}",
                            process_command("consumer", config_file, code), env, cfg,
                            cfg.kafka.group_id, ledger, tmp, cwd=code)


def telegraf_binary() -> Path:
    """The Telegraf built by scripts/stack/build-telegraf.sh (built now if missing: ~30 s with a warm Go cache)."""
    subprocess.run(["bash", str(SCRIPTS / "build-telegraf.sh")], check=True, stdout=subprocess.DEVNULL,
                   env=clean_env(HEALTHPIPE_CACHE=str(CACHE), TELEGRAF_VERSION=TELEGRAF_VERSION))
    return CACHE / f"telegraf-{TELEGRAF_VERSION}-b2-b11" / "telegraf"


def b2_telegraf(cfg, ledger, tmp: Path, telegraf: Path) -> dict:
    """The same topic through Telegraf (kafka_consumer + xpath_json parser → influxdb_v2) into the same InfluxDB."""
    group = f"telegraf-{uuid.uuid4().hex[:6]}"
    s = cfg.load.influxdb
    env = clean_env(HP_KAFKA=cfg.kafka.bootstrap_servers, HP_TOPIC=cfg.kafka.topic, HP_GROUP=group,
                    HP_INFLUX_URL=s.url, HP_INFLUX_TOKEN=s.token.get_secret_value(), HP_INFLUX_ORG=s.org,
                    HP_INFLUX_BUCKET=s.bucket, HP_BATCH=str(s.batch_size))
    return _until_committed("telegraf", [str(telegraf), "--config", str(Path(__file__).parent / "telegraf.conf")],
                            env, cfg, group, ledger, tmp)


def one_run(services, n: int, run: int, telegraf: Path | None) -> dict:
    writers = services.config().consumer.writers
    with ExitStack() as buckets:
        def fresh(cfg):  # every contender writes into an empty bucket of its own
            settings = buckets.enter_context(temporary_bucket(cfg.load.influxdb, "bench"))
            return cfg.model_copy(update={"load": cfg.load.model_copy(update={"influxdb": settings})})

        row: dict = {"run": run,
                     "b0_influx": b0_influx_ceiling(fresh(services.config()), n, seed=1000 + run),
                     "b0_influx_writers": b0_influx_ceiling(fresh(services.config()), n, seed=3000 + run,
                                                            connections=writers)}
        # The consumer's fixed cost (start, imports, group join, first batch): the same command on a topic of one
        # 1,000-sample message; at 2 M samples it is a fifth of the total, at 10 M a twentieth
        small_cfg, small = prefill(services, 1000, seed=4000 + run)
        row["b2_consumer_start"] = b2_consumer(fresh(small_cfg), small, RESULTS)
        cfg, ledger = prefill(services, n, seed=2000 + run)
        row["b0_kafka"] = b0_kafka_consume(cfg, len(ledger.messages))
        # healthpipe at its default writers, healthpipe at 1 writer (Telegraf's one connection), Telegraf
        order = ["b2_consumer", "b2_consumer_1writer"] + (["b2_telegraf"] if telegraf else [])
        for name in order[::-1] if run % 2 else order:  # alternate who reads the topic first
            target = fresh(cfg)
            if name == "b2_consumer":
                row[name] = b2_consumer(target, ledger, RESULTS)
            elif name == "b2_consumer_1writer":
                row[name] = b2_consumer(target, ledger, RESULTS, writers=1)
            else:
                row[name] = b2_telegraf(target, ledger, RESULTS, telegraf)  # type: ignore[arg-type]
    hp = row["b2_consumer"]
    start_cpu = row["b2_consumer_start"]["cpu_s_per_million"] * 1000 / 1e6
    row["consumer_start_cpu_s"] = start_cpu
    row["consumer_cpu_s_per_million_after_start"] = (hp["cpu_s_per_million"] * n / 1e6 - start_cpu) / n * 1e6
    row["ratio_consumer_vs_influx_ceiling"] = hp["samples_per_s"] / row["b0_influx"]["samples_per_s"]
    row["ratio_consumer_vs_influx_ceiling_same_connections"] = (hp["samples_per_s"] /
                                                                row["b0_influx_writers"]["samples_per_s"])
    row["ratio_consumer_1writer_vs_influx_ceiling"] = (row["b2_consumer_1writer"]["samples_per_s"] /
                                                       row["b0_influx"]["samples_per_s"])
    if telegraf:
        tg = row["b2_telegraf"]
        row["ratio_consumer_vs_telegraf"] = hp["samples_per_s"] / tg["samples_per_s"]
        row["ratio_consumer_1writer_vs_telegraf"] = row["b2_consumer_1writer"]["samples_per_s"] / tg["samples_per_s"]
        row["cpu_efficiency_consumer_vs_telegraf"] = tg["cpu_s_per_million"] / hp["cpu_s_per_million"]
    return row


def summarize(rows: list[dict], n: int) -> dict:
    def median(*path: str) -> float:
        values = []
        for r in rows:
            for key in path:
                r = r[key]
            values.append(r)
        return statistics.median(values)

    summary = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "samples": n, "runs": len(rows),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "influx_ceiling_samples_per_s": median("b0_influx", "samples_per_s"),
        "influx_ceiling_writers_samples_per_s": median("b0_influx_writers", "samples_per_s"),
        "influxd_cpu_s_per_million_at_ceiling": median("b0_influx", "influxd_cpu_s_per_million"),
        "kafka_consume_messages_per_s": median("b0_kafka", "messages_per_s"),
        "consumer_samples_per_s": median("b2_consumer", "samples_per_s"),
        "consumer_cpu_s_per_million": median("b2_consumer", "cpu_s_per_million"),
        "consumer_start_cpu_s": median("consumer_start_cpu_s"),
        "consumer_cpu_s_per_million_after_start": median("consumer_cpu_s_per_million_after_start"),
        "consumer_influxd_cpu_s_per_million": median("b2_consumer", "influxd_cpu_s_per_million"),
        "consumer_peak_rss_mb_max": max(r["b2_consumer"]["peak_rss_mb"] for r in rows),
        "ratio_consumer_vs_influx_ceiling": median("ratio_consumer_vs_influx_ceiling"),
        "ratio_consumer_vs_influx_ceiling_same_connections":
            median("ratio_consumer_vs_influx_ceiling_same_connections"),
        "consumer_1writer_samples_per_s": median("b2_consumer_1writer", "samples_per_s"),
        "consumer_1writer_cpu_s_per_million": median("b2_consumer_1writer", "cpu_s_per_million"),
        "ratio_consumer_1writer_vs_influx_ceiling": median("ratio_consumer_1writer_vs_influx_ceiling"),
    }
    if "b2_telegraf" in rows[0]:
        summary |= {
            "telegraf_samples_per_s": median("b2_telegraf", "samples_per_s"),
            "telegraf_cpu_s_per_million": median("b2_telegraf", "cpu_s_per_million"),
            "telegraf_influxd_cpu_s_per_million": median("b2_telegraf", "influxd_cpu_s_per_million"),
            "telegraf_peak_rss_mb_max": max(r["b2_telegraf"]["peak_rss_mb"] for r in rows),
            "ratio_consumer_vs_telegraf": median("ratio_consumer_vs_telegraf"),
            "ratio_consumer_1writer_vs_telegraf": median("ratio_consumer_1writer_vs_telegraf"),
            "cpu_efficiency_consumer_vs_telegraf": median("cpu_efficiency_consumer_vs_telegraf"),
        }
    return summary


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="500k samples, 3 runs (~3 min)")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--no-telegraf", action="store_true", help="skip the Telegraf side of B2")
    args = parser.parse_args()
    n = args.samples or (500_000 if args.quick else 2_000_000)
    services = native_or_exit()
    RESULTS.mkdir(exist_ok=True)
    telegraf = None if args.no_telegraf else telegraf_binary()
    rows = []
    for run in range(args.runs or 3):
        rows.append(one_run(services, n, run, telegraf))
        print(json.dumps(rows[-1]), flush=True)
    summary = summarize(rows, n)
    (RESULTS / f"bench-{int(time.time())}.json").write_text(json.dumps({"summary": summary, "runs": rows}, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
