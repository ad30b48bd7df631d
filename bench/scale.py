"""B13: how cost grows with the work — cardinality, series churn and backlog size (issue #29).

    python -m bench.scale cardinality [--series 1000 10000 100000 1000000] [--samples 2000000]
    python -m bench.scale churn [--series 10000] [--minutes 30]
    python -m bench.scale replicas [--replicas 1 2 3 6]   # switches the stack to 3 brokers and back
    python -m bench.scale backlog [--samples 10000000 100000000]
    python -m bench.scale producer [--series 1000 10000 100000 1000000]
    python -m bench.scale reads [--series 1000 10000 100000 1000000] [--samples 1000000]
    python -m bench.scale plot [--reads-before RESULTS_JSON [--reads-before-what verify]]   # docs/perf/scale-*.png

- cardinality: the same number of samples spread over 1k ... 1M series, every series scraped every 10 s and
  delivered as one message per series per 10-minute window (at 1M series: 2 samples a message, as a live
  producer at a short poll interval delivers them). The consumer (a real `healthpipe consumer` process) loads a
  prefilled topic into a fresh bucket: samples/s, CPU-s per million samples, its peak RSS, and InfluxDB's CPU per
  sample and RSS. The consumer runs twice per size where the default tag cache (transform.series_cache_size,
  20,000) is smaller than the series count: with the default, and with a cache holding every series (what the
  bound costs in CPU and saves in memory). The producer reads the same series from a Prometheus of its own
  (promtool blocks, 1 minute of them) in one window: Prometheus' answer time, the producer's CPU and peak RSS.
- churn: a stream of `--series` live series where 10 % are replaced by new ones every minute, for `--minutes`
  minutes of scrapes (every 15 s); prefilled, then consumed, RSS sampled against progress; the producer backfills
  the same churn from a Prometheus of its own, one window per minute, RSS sampled. Minutes of data, not of wall
  time: memory depends on the series seen, not on the clock.
- replicas: 1, 2, 3, 6 consumer replicas in one group over 6 partitions on the 3-broker cluster: the aggregate
  rate and the CPU per sample. On 2 cores the wall rate saturates; the CPU per sample carries to other machines.
- producer: one window of 1k ... 1M series from a Prometheus of its own, read whole (extract.max_series_per_read
  above the series count: the producer before it read in groups) and in groups of series (the default), side by
  side: wall time, CPU, peak RSS.
- reads: `healthpipe verify` (bench.verify, the exact case: the data loaded by the real producer and consumer
  from a Prometheus of its own, samples every 10 s) and `healthpipe export` (bench.export: InfluxDB filled
  directly, a sample a minute, exported on a 1-minute grid, so grid rows = samples) over the same `--samples`
  spread over 1k ... 1M series: wall seconds and peak RSS of each command's process.
- backlog: bench.memory's run (a topic of N samples drained by one consumer, RSS against progress) for each N.

Every run checks completeness: the count in InfluxDB equals the samples sent. Results: bench/results/scale-*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import requests
from confluent_kafka import Producer

from bench.producer import QUERY, BlockPrometheus, openmetrics
from bench.support import (
    RESULTS,
    clean_env,
    cpu_seconds,
    influx_count,
    influxd_cpu_seconds,
    influxd_settled,
    process_command,
    run_until_committed,
    status_mb,
)
from healthpipe.common.kafka import ensure_topics
from healthpipe.common.messages import SeriesWindow, headers
from healthpipe.ops.stack import STACK_DIR
from tests.support.influx import temporary_bucket
from tests.support.pipeline import write_config
from tests.support.services import native_or_exit

ROOT = Path(__file__).resolve().parents[1]
PLOTS = ROOT / "docs" / "perf"
DEFAULT_CACHE = 20_000


def influxd_pid() -> int:
    return int((STACK_DIR / "pids" / "influxdb.pid").read_text())


def produce_windows(cfg, windows) -> int:
    """Every SeriesWindow of the iterable onto the data topic (streamed, never held); returns samples sent."""
    ensure_topics(cfg)
    producer = Producer({**cfg.kafka.as_librdkafka_dict(), "enable.idempotence": True, "linger.ms": 50,
                         "queue.buffering.max.messages": 1_000_000})
    errors: list = []
    sent = 0
    for w in windows:
        while True:
            try:
                producer.produce(cfg.kafka.topic, key=w.key, value=w.to_json(), headers=headers(),
                                 on_delivery=lambda err, _m: errors.append(err) if err else None)
                break
            except BufferError:  # librdkafka's queue is full: let it drain
                producer.poll(0.1)
        producer.poll(0)
        sent += len(w.samples)
    assert producer.flush(120) == 0 and not errors, errors[:3]
    return sent


def labels_of(name: str) -> dict[str, str]:
    return {"__name__": "up", "job": "scale", "instance": name, "zone": f"z{zlib.crc32(name.encode()) % 7}"}


def spread(n_series: int, total: int, start_ms: int, every_ms: int = 10_000, window: int = 60):
    """`total` samples over n_series series, in windows of `window` samples per series (10 minutes at 10 s)."""
    points = max(1, total // n_series)
    for w0 in range(0, points, window):
        for s in range(n_series):
            samples = [(start_ms + i * every_ms, repr(float((s + i) % 100)))
                       for i in range(w0, min(points, w0 + window))]
            yield SeriesWindow("availability", "availability", labels_of(f"node-{s}"), samples[0][0] - 1,
                               samples[-1][0], samples)


def run_consumer(cfg, bucket, total: int, label: str, progress_of=None) -> dict:
    """One `healthpipe consumer` process from the first offset to the last commit; its CPU, peak RSS and RSS samples,
    InfluxDB's CPU and RSS meanwhile. Completeness: the count in InfluxDB equals `total`."""
    config_file = write_config(cfg, RESULTS / f"scale-{label}.yaml")
    env = clean_env(HEALTHPIPE_LOAD__INFLUXDB__TOKEN=bucket.token.get_secret_value(),
                    HEALTHPIPE_PIPELINE__LOG_LEVEL="WARNING")
    influxd_settled()
    influx_cpu0, pid = influxd_cpu_seconds(), influxd_pid()
    t0 = time.perf_counter()
    proc = subprocess.Popen(process_command("consumer", config_file), env=env, stdout=subprocess.DEVNULL,
                            stderr=open(RESULTS / "scale-consumer.log", "ab"))  # noqa: SIM115
    rss: list[tuple[float, float, float]] = []  # (seconds, progress 0..1, consumer RSS MB)
    influx_rss = 0.0
    try:
        import threading

        done = threading.Event()

        def sample() -> None:
            nonlocal influx_rss
            while not done.wait(0.5):
                try:
                    rss.append((time.perf_counter() - t0, progress_of() if progress_of else 0.0,
                                status_mb(proc.pid, "VmRSS")))
                    influx_rss = max(influx_rss, status_mb(pid, "VmRSS"))
                except (FileNotFoundError, ProcessLookupError):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        seconds = run_until_committed(proc, cfg, cfg.kafka.group_id, "consumer")
        cpu, peak = cpu_seconds(proc.pid), status_mb(proc.pid, "VmHWM")
        done.set()
        sampler.join()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    influx_cpu = influxd_cpu_seconds() - influx_cpu0
    loaded = influx_count(bucket, 'r.job == "scale"', start="0")
    assert loaded == total, f"{label}: {loaded} of {total} points in InfluxDB"
    return {"samples": total, "seconds": seconds, "samples_per_s": total / seconds,
            "cpu_s_per_million": cpu / total * 1e6, "peak_rss_mb": peak,
            "influxd_cpu_s_per_million": influx_cpu / total * 1e6, "influxd_peak_rss_mb": influx_rss, "rss": rss}


def run_producer_window(services, tmp: Path, n_series: int, every_s: int = 10, minutes: int = 1,
                        variants: dict[str, dict] | None = None) -> list[dict]:
    """A Prometheus of its own holding n_series × `minutes` of samples; `healthpipe producer --once` reads them
    in one window and publishes them: its wall time, CPU and peak RSS (wait4's rusage), samples on the topic.
    One producer run per variant ({name: extract settings}; one "default" run without) against the same
    Prometheus, one after another: a row each."""
    points = minutes * 60 // every_s
    end_s = int(time.time()) // 60 * 60 - 300
    start_s = end_s - points * every_s
    source = tmp / f"card-{n_series}.om"
    samples = openmetrics(source, n_series, start_s + every_s, points, every_s)  # B1's data set, n_series wide
    workdir = tmp / f"prom-{n_series}"
    workdir.mkdir()
    t_blocks = time.perf_counter()
    prom = BlockPrometheus(workdir, source, flags=("--query.max-samples=100000000",))
    blocks_s = time.perf_counter() - t_blocks
    source.unlink()
    from tests.support.kafka import end_offsets

    rows = []
    try:
        t1 = time.perf_counter()
        answer = requests.post(f"{prom.url}/api/v1/query", timeout=600,
                               data={"query": f"{QUERY.promql}[{minutes * 60}s]", "time": end_s})
        answer.raise_for_status()
        prometheus_s, answer_mb = time.perf_counter() - t1, len(answer.content) / 1e6
        del answer
        for name, extract in (variants or {"default": {}}).items():
            cfg = services.config(extract={"prometheus_url": prom.url, "queries": [QUERY.model_dump()],
                                           "lag_seconds": 1, "raw_chunk": "1h", "request_timeout_seconds": 600,
                                           "max_backfill": f"{int(time.time()) - start_s + 1}s", **extract})
            config_file = write_config(cfg, tmp / f"producer-{n_series}-{name}.yaml")
            t0 = time.perf_counter()
            proc = subprocess.Popen([*process_command("producer", config_file), "--once"],
                                    env=clean_env(HEALTHPIPE_PIPELINE__LOG_LEVEL="WARNING"),
                                    stdout=subprocess.DEVNULL,
                                    stderr=open(RESULTS / "scale-producer.log", "ab"))  # noqa: SIM115
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            seconds = time.perf_counter() - t0
            assert proc.returncode == 0, \
                f"producer --once exited {proc.returncode}; see bench/results/scale-producer.log"
            messages = sum(end_offsets(cfg, cfg.kafka.topic).values())
            assert messages >= n_series, f"{messages} records on the topic for {n_series} series"
            rows.append({"series": n_series, "variant": name, "extract": extract, "samples": samples,
                         "seconds": seconds, "cpu_s": usage.ru_utime + usage.ru_stime,
                         "peak_rss_mb": usage.ru_maxrss / 1024, "prometheus_answer_s": prometheus_s,
                         "answer_mb": answer_mb, "topic_records": messages, "blocks_s": blocks_s})
    finally:
        prom.close()
    return rows


def producer_window(args: argparse.Namespace) -> dict:
    """The producer alone against the series count: one window read whole (max_series_per_read above the count:
    the producer before #29's groups) and in groups of the default size, side by side against one Prometheus."""
    services = native_or_exit()
    rows = []
    with tempfile.TemporaryDirectory(prefix="hp-b13p-") as tmp:
        for n in args.series:
            for row in run_producer_window(services, Path(tmp), n, variants={
                    "whole": {"max_series_per_read": n + 1}, "groups": {}}):
                rows.append(row)
                print(json.dumps(row), flush=True)
    return {"kind": "producer", "rows": rows}


def cardinality(args: argparse.Namespace) -> dict:
    services = native_or_exit()
    rows = []
    start_ms = (int(time.time()) - 3 * 86_400) * 1000
    with tempfile.TemporaryDirectory(prefix="hp-b13-") as tmp:
        for n in args.series:
            caches = [DEFAULT_CACHE] + ([n + 1] if n > DEFAULT_CACHE and not args.default_cache_only else [])
            base = services.config(consumer={"metrics_port": 0})
            t = time.perf_counter()
            sent = produce_windows(base, spread(n, args.samples, start_ms))
            prefill_s = time.perf_counter() - t
            for cache in caches:
                with temporary_bucket(base.load.influxdb, "bench-scale") as bucket:
                    cfg = base.model_copy(update={
                        "load": base.load.model_copy(update={"influxdb": bucket}),
                        "transform": base.transform.model_copy(update={"series_cache_size": cache}),
                        "kafka": base.kafka.model_copy(update={"group_id": f"{base.kafka.group_id}-c{cache}"})})
                    row = run_consumer(cfg, bucket, sent, f"card-{n}-c{cache}")
                row.pop("rss")
                row.update(series=n, series_cache_size=cache, prefill_s=prefill_s)
                rows.append(row)
                print(json.dumps(row), flush=True)
            if not args.no_producer:
                (row,) = run_producer_window(services, Path(tmp), n)
                rows.append({"producer": row})
                print(json.dumps({"producer": row}), flush=True)
    return {"kind": "cardinality", "samples": args.samples, "rows": rows}


def churn_windows(n_series: int, minutes: int, start_ms: int, replaced: float = 0.1, every_ms: int = 15_000):
    """Minute by minute: every live series' 4 samples of that minute as one message; then 10 % of the series are
    replaced by new ones (the oldest generation goes: pods restarted with new names)."""
    live = [f"node-{i}" for i in range(n_series)]
    born = n_series
    per_minute = 60_000 // every_ms
    for m in range(minutes):
        t0 = start_ms + m * 60_000
        for name in live:
            samples = [(t0 + (i + 1) * every_ms, repr(float(i))) for i in range(per_minute)]
            yield SeriesWindow("availability", "availability", labels_of(name), t0, samples[-1][0], samples)
        k = int(n_series * replaced)
        live = live[k:] + [f"pod-{born + i}" for i in range(k)]
        born += k


def churn(args: argparse.Namespace) -> dict:
    from tests.support import kafka

    services = native_or_exit()
    start_ms = (int(time.time()) - 2 * 86_400) // 60 * 60 * 1000
    base = services.config(consumer={"metrics_port": 0})
    sent = produce_windows(base, churn_windows(args.series, args.minutes, start_ms))
    ends = kafka.end_offsets(base, base.kafka.topic)

    def progress() -> float:
        committed = kafka.committed_offsets(base, base.kafka.group_id, base.kafka.topic)
        return sum(max(committed[p], 0) for p in ends) / max(1, sum(ends.values()))

    with temporary_bucket(base.load.influxdb, "bench-scale") as bucket:
        cfg = base.model_copy(update={"load": base.load.model_copy(update={"influxdb": bucket})})
        consumer = run_consumer(cfg, bucket, sent, "churn", progress_of=progress)
    minute_rss = {}
    for m in (5, 10, 15, 20, 25, args.minutes):
        at = [r for _, p, r in consumer["rss"] if p >= m / args.minutes]
        minute_rss[m] = at[0] if at else consumer["rss"][-1][2]
    producer = churn_producer(services, args.series, args.minutes) if not args.no_producer else None
    return {"kind": "churn", "series": args.series, "minutes": args.minutes, "samples": sent,
            "distinct_series": args.series + int(args.series * 0.1) * (args.minutes - 1),
            "consumer": consumer, "consumer_rss_mb_at_minute": minute_rss, "producer": producer}


def churn_producer(services, n_series: int, minutes: int) -> dict:
    """The producer backfilling the same churn from a Prometheus of its own, one 1-minute window at a time (one
    transaction each): its RSS against its watermark, sampled every 0.2 s from /proc and its /metrics."""
    from tests.support.pipeline import free_port

    end_s = int(time.time()) // 60 * 60 - 300
    start_ms = (end_s - minutes * 60) * 1000
    with tempfile.TemporaryDirectory(prefix="hp-b13-churn-") as tmp:
        source = Path(tmp) / "churn.om"
        with source.open("w") as f:
            f.write("# TYPE up gauge\n")
            by_series: dict[str, list[str]] = {}
            for w in churn_windows(n_series, minutes, start_ms):
                labels = ",".join(f'{k}="{v}"' for k, v in w.labels.items() if k != "__name__")
                by_series.setdefault(f"up{{{labels}}} ", []).extend(f"{v} {ts / 1000:.0f}" for ts, v in w.samples)
            for prefix, lines in by_series.items():  # OpenMetrics wants a series' samples together, in time order
                f.writelines(f"{prefix}{line}\n" for line in lines)
            f.write("# EOF\n")
        prom = BlockPrometheus(Path(tmp), source)
        port = free_port()
        try:
            query = {"name": "churn", "promql": 'up{job="scale"}', "mode": "raw", "metric_type": "availability"}
            backfill = f"{int(time.time()) - end_s + minutes * 60 + 60}s"
            cfg = services.config(extract={"prometheus_url": prom.url, "queries": [query], "lag_seconds": 1,
                                           "raw_chunk": "1m", "max_backfill": backfill},
                                  producer={"metrics_port": port})
            config_file = write_config(cfg, Path(tmp) / "producer.yaml")
            proc = subprocess.Popen([*process_command("producer", config_file), "--once"],
                                    env=clean_env(HEALTHPIPE_PIPELINE__LOG_LEVEL="WARNING"), stdout=subprocess.DEVNULL,
                                    stderr=open(RESULTS / "scale-producer.log", "ab"))  # noqa: SIM115
            rss: list[tuple[float, float]] = []  # (1-minute windows published, RSS MB)
            while proc.poll() is None:
                try:
                    mb = status_mb(proc.pid, "VmRSS")
                    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                except (requests.RequestException, FileNotFoundError, ProcessLookupError):
                    time.sleep(0.2)
                    continue
                # one transaction per 1-minute window, the first ending at minute 1 (the watermark gauge is set
                # only when the cycle's windows are all done)
                done = [float(line.split()[-1]) for line in text.splitlines()
                        if line.startswith('healthpipe_producer_transactions_total{outcome="committed"}')]
                if done:
                    rss.append((done[0], mb))
                time.sleep(0.2)
            assert proc.returncode == 0, "producer --once failed; see bench/results/scale-producer.log"
        finally:
            prom.close()
    return {"rss": rss}


def replicas(args: argparse.Namespace) -> dict:
    """k consumer replicas in one group over a 6-partition topic on the 3-broker cluster (RF 3, min ISR 2): the
    aggregate rate and CPU per sample (all replicas' CPU / samples), from the first start to the last commit."""
    from healthpipe.ops import stack

    services = native_or_exit()
    original = stack.kafka_brokers()
    rows = []
    try:
        stack.up(brokers=3, with_s3=stack.S3.pid() is not None)
        start_ms = (int(time.time()) - 3 * 86_400) * 1000
        for k in args.replicas:
            base = services.config(kafka={"bootstrap_servers": stack.bootstrap_servers(3), "replication_factor": 3,
                                          "partitions": 6}, consumer={"metrics_port": 0})
            sent = produce_windows(base, spread(args.series, args.samples, start_ms))
            with temporary_bucket(base.load.influxdb, "bench-scale") as bucket:
                cfg = base.model_copy(update={"load": base.load.model_copy(update={"influxdb": bucket})})
                config_file = write_config(cfg, RESULTS / f"scale-replicas-{k}.yaml")
                env = clean_env(HEALTHPIPE_LOAD__INFLUXDB__TOKEN=bucket.token.get_secret_value(),
                                HEALTHPIPE_PIPELINE__LOG_LEVEL="WARNING")
                influxd_settled()
                influx_cpu0 = influxd_cpu_seconds()
                procs = [subprocess.Popen(process_command("consumer", config_file), env=env,
                                          stdout=subprocess.DEVNULL,
                                          stderr=open(RESULTS / "scale-consumer.log", "ab"))  # noqa: SIM115
                         for _ in range(k)]
                try:
                    seconds = run_until_committed(procs[0], cfg, cfg.kafka.group_id, "consumer replicas")
                    cpu = [cpu_seconds(p.pid) for p in procs]
                finally:
                    for p in procs:
                        p.send_signal(signal.SIGTERM)
                    for p in procs:
                        p.wait(60)
                influx_cpu = influxd_cpu_seconds() - influx_cpu0
                loaded = influx_count(bucket, 'r.job == "scale"', start="0")
            assert loaded == sent, f"{k} replicas: {loaded} of {sent} points in InfluxDB"
            rows.append({"replicas": k, "partitions": 6, "samples": sent, "seconds": seconds,
                         "samples_per_s": sent / seconds, "cpu_s_per_million": sum(cpu) / sent * 1e6,
                         "cpu_s_per_million_per_replica": [c / sent * 1e6 for c in cpu],
                         "influxd_cpu_s_per_million": influx_cpu / sent * 1e6})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        stack.up(brokers=original, with_s3=stack.S3.pid() is not None)
    return {"kind": "replicas", "series": args.series, "rows": rows}


def backlog(args: argparse.Namespace) -> dict:
    from bench import memory

    services = native_or_exit()
    rows = []
    for n in args.samples:
        base = services.config()
        t = time.perf_counter()
        memory.prefill(base, n)
        prefill_s = time.perf_counter() - t
        with temporary_bucket(base.load.influxdb, "bench-scale") as bucket:
            cfg = base.model_copy(update={"load": base.load.model_copy(update={"influxdb": bucket})})
            row = memory.run_consumer(cfg, bucket, n)
        row["prefill_s"] = prefill_s
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "rss"}), flush=True)
    return {"kind": "backlog", "rows": rows}


def reads(args: argparse.Namespace) -> dict:
    """verify (B5's bench, the exact case) and export (B7's) against the series count: the same samples spread
    over more and more series, each bench a process of its own with its own data set and bucket."""
    native_or_exit()
    rows = []
    for n in args.series:
        points = max(1, args.samples // n)
        row: dict = {"series": n, "points_per_series": points}
        for name, every, extra in (("verify", 10, ["--exact-only"]), ("export", 60, [])):
            # hours for exactly `points` samples a series: the benches take int(hours * 3600 / every)
            hours = points * every / 3600 * (1 + 1e-7)
            before = time.time()
            subprocess.run([sys.executable, "-m", f"bench.{name}", "--series", str(n), "--hours", repr(hours),
                            "--every", str(every), "--runs", "1", *extra], check=True, cwd=ROOT)
            written = [f for f in RESULTS.glob(f"{name}-[0-9]*.json") if f.stat().st_mtime >= before]
            doc = json.loads(max(written, key=lambda f: f.stat().st_mtime).read_text())
            row[name] = doc["summary"] if name == "verify" else doc["b7_export"]
        rows.append(row)
        print(json.dumps({"series": n, "verify_s": row["verify"]["exact_median_s"],
                          "verify_rss_mb": row["verify"]["exact_peak_rss_mb_max"],
                          "export_samples_per_s": row["export"]["export_samples_per_s"],
                          "export_rss_mb": row["export"]["export_peak_rss_mb_max"]}), flush=True)
    return {"kind": "reads", "samples": args.samples, "rows": rows}


def newest(kind: str) -> dict:
    files = sorted(RESULTS.glob(f"scale-{kind}-*.json"))
    if not files:
        raise SystemExit(f"no bench/results/scale-{kind}-*.json: run `python -m bench.scale {kind}` first")
    return json.loads(files[-1].read_text())


def finish(ax) -> None:
    """A linear panel: from zero, light grid, small legend."""
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def save(fig, name: str) -> str:
    fig.tight_layout()
    fig.savefig(PLOTS / name, dpi=110)
    return name


def plot(args: argparse.Namespace) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    if list(RESULTS.glob("scale-cardinality-*.json")):
        data = newest("cardinality")
        rows = [r for r in data["rows"] if "producer" not in r]
        fig, (rate, cpu, mem) = plt.subplots(3, 1, figsize=(8, 9.5), sharex=True)
        for cache, style in ((DEFAULT_CACHE, "o-"), ("all", "s--")):
            mine = sorted((r for r in rows if (r["series_cache_size"] == DEFAULT_CACHE) == (cache == DEFAULT_CACHE)),
                          key=lambda r: r["series"])
            if cache == "all":  # the runs with a cache holding every series, plus the sizes the default covers
                mine = sorted([r for r in rows if r["series"] <= DEFAULT_CACHE] + mine, key=lambda r: r["series"])
            name = "default tag cache (20,000 series)" if cache == DEFAULT_CACHE else "tag cache holding every series"
            xs = [r["series"] for r in mine]
            rate.plot(xs, [r["samples_per_s"] / 1000 for r in mine], style, label=f"consumer, {name}")
            cpu.plot(xs, [r["cpu_s_per_million"] for r in mine], style, label=f"consumer, {name}")
            mem.plot(xs, [r["peak_rss_mb"] for r in mine], style, label=f"consumer peak RSS, {name}")
            if cache == DEFAULT_CACHE:
                cpu.plot(xs, [r["influxd_cpu_s_per_million"] for r in mine], "^:", color="tab:red",
                         label="InfluxDB (influxd) CPU")
                mem.plot(xs, [r["influxd_peak_rss_mb"] for r in mine], "^:", color="tab:red",
                         label="InfluxDB (influxd) RSS")
        producer = sorted((r["producer"] for r in data["rows"] if "producer" in r), key=lambda r: r["series"])
        if producer:
            cpu.plot([p["series"] for p in producer], [p["cpu_s"] / p["samples"] * 1e6 for p in producer], "d-.",
                     color="tab:purple", label="producer CPU (one window of 1 min)")
            mem.plot([p["series"] for p in producer], [p["peak_rss_mb"] for p in producer], "d-.",
                     color="tab:purple", label="producer peak RSS (one window: every series at once)")
        mem.axhline(500, color="grey", ls=":", lw=1, label="target at 1M series: consumer ≤ 500 MB")
        rate.set_ylabel("thousand samples/s")
        cpu.set_ylabel("CPU-s per million samples")
        mem.set_ylabel("MB")
        mem.set_xlabel("distinct series (same total samples per run; log scale)")
        for ax in (rate, cpu, mem):
            ax.set_xscale("log")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
        rate.set_title(f"Cost against cardinality: {data['samples']:,} samples per run over 1k ... 1M series "
                       "(2 cores)", fontsize=10)
        made.append(save(fig, "scale-cardinality.png"))
    if list(RESULTS.glob("scale-producer-*.json")):
        data = newest("producer")
        fig, (mem, wall) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
        for variant, style, cpu_style, colour, name in (
                ("whole", "s--", "s:", "tab:blue", "one answer a window (before)"),
                ("groups", "o-", "o:", "tab:orange", "groups of ≤ 50,000 series (extract.max_series_per_read)")):
            mine = sorted((r for r in data["rows"] if r["variant"] == variant), key=lambda r: r["series"])
            xs = [r["series"] for r in mine]
            mem.plot(xs, [r["peak_rss_mb"] for r in mine], style, color=colour, label=name)
            wall.plot(xs, [r["seconds"] for r in mine], style, color=colour, label=f"wall, {name}")
            wall.plot(xs, [r["cpu_s"] for r in mine], cpu_style, color=colour, alpha=0.5, label=f"CPU, {name}")
        mem.set_ylabel("producer peak RSS, MB")
        wall.set_ylabel("seconds for the window")
        wall.set_xlabel("series in one 1-minute window (6 samples each; log scale)")
        for ax in (mem, wall):
            ax.set_xscale("log")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
        mem.set_title("The producer against the series in a window: read whole vs in groups of series", fontsize=10)
        made.append(save(fig, "scale-producer.png"))
    if list(RESULTS.glob("scale-churn-*.json")):
        data = newest("churn")
        fig, ax = plt.subplots(figsize=(8, 4.2))
        ax.plot([p * data["minutes"] for _, p, _ in data["consumer"]["rss"]],
                [r for _, _, r in data["consumer"]["rss"]], label="consumer RSS")
        if data.get("producer"):
            ax.plot([m for m, _ in data["producer"]["rss"]], [r for _, r in data["producer"]["rss"]],
                    label="producer RSS")
        at10 = data["consumer_rss_mb_at_minute"]["10"]
        ax.axhspan(at10 * 0.9, at10 * 1.1, color="tab:green", alpha=0.12, label="consumer at minute 10 ± 10 %")
        ax.set_xlabel("minutes of churned data processed")
        ax.set_ylabel("RSS, MB")
        finish(ax)
        ax.set_title(f"Series churn: {data['series']:,} live series, 10 % replaced every minute "
                     f"({data['distinct_series']:,} distinct over {data['minutes']} min): memory levels off",
                     fontsize=9)
        made.append(save(fig, "scale-churn.png"))
    if list(RESULTS.glob("scale-replicas-*.json")):
        data = newest("replicas")
        rows = sorted(data["rows"], key=lambda r: r["replicas"])
        fig, (rate, cpu) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
        xs = [r["replicas"] for r in rows]
        rate.plot(xs, [r["samples_per_s"] / 1000 for r in rows], "o-", label="all replicas together")
        rate.set_ylabel("thousand samples/s")
        cpu.plot(xs, [r["cpu_s_per_million"] for r in rows], "o-", label="consumers, all replicas' CPU")
        cpu.plot(xs, [r["influxd_cpu_s_per_million"] for r in rows], "^:", color="tab:red", label="InfluxDB CPU")
        cpu.set_ylabel("CPU-s per million samples")
        cpu.set_xlabel("consumer replicas (one group, 6 partitions, 3 brokers)")
        cpu.set_xticks(xs)
        for ax in (rate, cpu):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            ax.set_ylim(bottom=0)
        rate.set_title("Replicas on 2 cores shared with InfluxDB: each replica adds its start and its share of the\n"
                       "rebalance, so the wall rate does not rise here; CPU per sample is what carries to bigger "
                       "machines", fontsize=9)
        made.append(save(fig, "scale-replicas.png"))
    if list(RESULTS.glob("scale-reads-*.json")):
        data = newest("reads")
        rows = sorted(data["rows"], key=lambda r: r["series"])
        xs = [r["series"] for r in rows]
        fig, (wall, mem) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
        wall.plot(xs, [r["verify"]["exact_median_s"] for r in rows], "o-", label="healthpipe verify (nothing missing)")
        wall.plot(xs, [r["export"]["samples"] / r["export"]["export_samples_per_s"] for r in rows], "s-",
                  label="healthpipe export (1-minute grid)")
        mem.plot(xs, [r["verify"]["exact_peak_rss_mb_max"] for r in rows], "o-", label="verify peak RSS")
        mem.plot(xs, [r["export"]["export_peak_rss_mb_max"] for r in rows], "s-", label="export peak RSS")
        if args.reads_before:  # an earlier run of the same command, at the code before a change (its own run)
            old = sorted(json.loads(args.reads_before.read_text())["rows"], key=lambda r: r["series"])
            name, olds = args.reads_before_label, [r["series"] for r in old]
            if args.reads_before_what == "export":
                wall.plot(olds, [r["export"]["samples"] / r["export"]["export_samples_per_s"] for r in old], "s:",
                          color="tab:orange", alpha=0.6, label=f"export, {name}")
                mem.plot(olds, [r["export"]["export_peak_rss_mb_max"] for r in old], "s:",
                         color="tab:orange", alpha=0.6, label=f"export peak RSS, {name}")
            else:
                wall.plot(olds, [r["verify"]["exact_median_s"] for r in old], "o:", color="tab:blue", alpha=0.6,
                          label=f"verify, {name}")
                mem.plot(olds, [r["verify"]["exact_peak_rss_mb_max"] for r in old], "o:", color="tab:blue",
                         alpha=0.6, label=f"verify peak RSS, {name}")
        wall.set_ylabel("seconds (one run)")
        mem.set_ylabel("MB")
        mem.set_xlabel(f"distinct series ({data['samples']:,} samples per run; log scale)")
        for ax in (wall, mem):
            ax.set_xscale("log")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
        wall.set_title("verify and export against cardinality: the same samples over more series", fontsize=10)
        made.append(save(fig, "scale-reads.png"))
    if list(RESULTS.glob("scale-backlog-*.json")):
        data = newest("backlog")
        fig, ax = plt.subplots(figsize=(8, 4.2))
        for row in data["rows"]:
            ax.plot([p * 100 for _, p, _ in row["rss"]], [r for _, _, r in row["rss"]],
                    label=f"{row['samples'] / 1e6:.0f} M samples: drained in {row['seconds']:.0f} s")
        ax.set_xlabel("backlog drained, %")
        ax.set_ylabel("consumer RSS, MB")
        finish(ax)
        peaks = ", ".join(f"{r['samples'] / 1e6:.0f} M: {r['peak_rss_mb']:.0f} MB" for r in data["rows"])
        ax.set_title(f"Backlog: the consumer's RSS while it drains; peak {peaks} (drain time linear)", fontsize=10)
        made.append(save(fig, "scale-backlog.png"))
    return {"plots": made}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    c = sub.add_parser("cardinality")
    c.add_argument("--series", type=int, nargs="+", default=[1000, 10_000, 100_000, 1_000_000])
    c.add_argument("--samples", type=int, default=2_000_000)
    c.add_argument("--default-cache-only", action="store_true")
    c.add_argument("--no-producer", action="store_true")
    ch = sub.add_parser("churn")
    ch.add_argument("--series", type=int, default=10_000)
    ch.add_argument("--minutes", type=int, default=30)
    ch.add_argument("--no-producer", action="store_true")
    r = sub.add_parser("replicas")
    r.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3, 6])
    r.add_argument("--series", type=int, default=2000)
    r.add_argument("--samples", type=int, default=2_000_000)
    pw = sub.add_parser("producer")
    pw.add_argument("--series", type=int, nargs="+", default=[1000, 10_000, 100_000, 1_000_000])
    b = sub.add_parser("backlog")
    b.add_argument("--samples", type=int, nargs="+", default=[10_000_000, 100_000_000])
    rd = sub.add_parser("reads")
    rd.add_argument("--series", type=int, nargs="+", default=[1000, 10_000, 100_000, 1_000_000])
    rd.add_argument("--samples", type=int, default=1_000_000)
    pl = sub.add_parser("plot")
    pl.add_argument("--reads-before", type=Path, default=None, metavar="RESULTS_JSON",
                    help="also draw a curve of this earlier `reads` run (dotted; --reads-before-what)")
    pl.add_argument("--reads-before-label", default="before")
    pl.add_argument("--reads-before-what", choices=["export", "verify"], default="export",
                    help="which curve of --reads-before to draw (dotted)")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    result = {"cardinality": cardinality, "churn": churn, "replicas": replicas, "backlog": backlog,
              "producer": producer_window, "reads": reads, "plot": plot}[args.what](args)
    if args.what != "plot":
        (RESULTS / f"scale-{args.what}-{int(time.time())}.json").write_text(json.dumps(result))
    print(json.dumps({k: v for k, v in result.items() if k not in ("rows", "consumer", "producer")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
