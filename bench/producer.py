"""B1: the producer against the bare fetch of the same Prometheus API responses.

The data: `--series` series × `--hours` of samples every `--every` seconds, written as OpenMetrics, turned into
TSDB blocks by `promtool tsdb create-blocks-from openmetrics` and served by a Prometheus of its own (a free port,
no scraping), so every run reads the same, known data. The stack's Prometheus is left alone.

- bare fetch: a `requests` loop POSTing the producer's raw windows (`extract.raw_chunk`) and parsing the JSON;
- producer: `ProducerService` backfilling the same span from a watermark, as after an outage: read, build
  messages, publish them and the watermark in Kafka transactions.
Completeness: bare count = producer count = samples on the topic = series × points.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import requests

from healthpipe.common.config import HealthpipeConfig, QuerySettings
from healthpipe.producer.service import ProducerService
from healthpipe.producer.windows import Window, pending_windows
from tests.support.kafka import read_topic
from tests.support.services import native_or_exit

QUERY = QuerySettings(name="bench", promql="bench_metric", mode="raw", metric_type="gauge")


def openmetrics(path: Path, n_series: int, start_s: int, n_points: int, every_s: int) -> int:
    """The data set as OpenMetrics text (one metric family, series grouped, timestamps ascending)."""
    with path.open("w") as f:
        f.write("# TYPE bench_metric gauge\n")
        for s in range(n_series):
            prefix = f'bench_metric{{instance="node-{s}",job="bench",zone="z{s % 7}"}} '
            f.writelines(f"{prefix}{(s * 31 + i) % 1000 / 10} {start_s + i * every_s}\n" for i in range(n_points))
        f.write("# EOF\n")
    return n_series * n_points


class BlockPrometheus:
    """A Prometheus serving only the blocks promtool builds from an OpenMetrics file (`flags`: more command-line
    flags, e.g. its query limits). No scraping: it holds exactly the file's samples."""

    def __init__(self, workdir: Path, source: Path, flags: tuple[str, ...] = ()):
        from tests.support.pipeline import free_port

        port = free_port()  # (9095 would collide with the 3-broker stack's controllers)
        self.url = f"http://127.0.0.1:{port}"
        data = workdir / "data"
        subprocess.run([shutil.which("promtool") or "/usr/bin/promtool", "tsdb", "create-blocks-from", "openmetrics",
                        str(source), str(data)], check=True, stdout=subprocess.DEVNULL)
        (workdir / "prometheus.yml").write_text("global: {}\n")
        self.proc = subprocess.Popen([shutil.which("prometheus") or "/usr/bin/prometheus",
                                      f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={data}",
                                      f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=30d",
                                      *flags],
                                     stdout=subprocess.DEVNULL, stderr=open(workdir / "prometheus.log", "w"))  # noqa: SIM115
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        self.close()
        raise RuntimeError(f"bench Prometheus did not become ready; see {workdir / 'prometheus.log'}")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


class BenchPrometheus(BlockPrometheus):
    """The benchmarks' data set (`openmetrics`) served by a BlockPrometheus."""

    def __init__(self, workdir: Path, n_series: int, start_s: int, n_points: int, every_s: int,
                 flags: tuple[str, ...] = ()):
        self.samples = openmetrics(workdir / "data.om", n_series, start_s, n_points, every_s)
        super().__init__(workdir, workdir / "data.om", flags)


def add_data_set_args(parser: argparse.ArgumentParser, series: int, hours: float) -> None:
    parser.add_argument("--series", type=int, default=series)
    parser.add_argument("--hours", type=float, default=hours)
    parser.add_argument("--every", type=int, default=10, help="seconds between a series' samples")
    parser.add_argument("--runs", type=int, default=3)


def data_set_span(args: argparse.Namespace) -> tuple[int, int, int]:
    """(points per series, first watermark s, last sample s): whole minutes ending 10 minutes ago (inside any
    lag); the first sample sits one step after the first watermark."""
    n_points = int(args.hours * 3600 / args.every)
    end_s = int(time.time()) // 60 * 60 - 600
    return n_points, end_s - n_points * args.every, end_s


def bare_fetch(url: str, windows: list[Window]) -> tuple[int, float, float]:
    """Samples, seconds and this process' CPU-seconds to fetch the windows and parse the JSON."""
    session = requests.Session()
    t0, c0 = time.perf_counter(), time.process_time()
    samples = 0
    for w in windows:
        body = session.post(f"{url}/api/v1/query", data={"query": f"{QUERY.promql}[{w.end_ms - w.start_ms}ms]",
                                                         "time": f"{w.end_ms / 1000:.3f}"}, timeout=120).json()
        samples += sum(1 for r in body["data"]["result"] for ts, _ in r["values"]
                       if w.start_ms < round(float(ts) * 1000) <= w.end_ms)
    return samples, time.perf_counter() - t0, time.process_time() - c0


def producer_backfill(services, prometheus_url: str, start_ms: int,
                      end_ms: int) -> tuple[int, float, float, HealthpipeConfig]:
    """The producer's own catch-up path: watermark at start, cycles until it reaches end. Returns samples,
    seconds, CPU-seconds (this process, librdkafka's threads included) and the config."""
    cfg = services.config(extract={"prometheus_url": prometheus_url, "queries": [QUERY.model_dump()],
                                   "max_backfill": "30d"}, producer={"metrics_port": 0})
    service = ProducerService(cfg, clock=lambda: end_ms / 1000 + cfg.extract.lag_seconds)
    service.initialize()
    service.watermarks[QUERY.name] = start_ms
    t0, c0 = time.perf_counter(), time.process_time()
    samples = 0
    while service.watermarks[QUERY.name] < end_ms:
        samples += service.run_single_cycle()[QUERY.name]
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    service.close()
    return samples, seconds, cpu, cfg


def main() -> int:
    parser = argparse.ArgumentParser()
    add_data_set_args(parser, series=1000, hours=2)
    args = parser.parse_args()
    services = native_or_exit()
    n_points, start_s, end_s = data_set_span(args)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hp-b1-") as tmp:
        prom = BenchPrometheus(Path(tmp), args.series, start_s + args.every, n_points, args.every)
        try:
            chunk_ms = services.config().extract.raw_chunk.ms
            windows = pending_windows(start_s * 1000, end_s * 1000, chunk_ms)
            for run in range(args.runs):
                # alternate who reads first: Prometheus' page cache favours whoever reads second
                if run % 2 == 0:
                    fetched, fetch_s, fetch_cpu = bare_fetch(prom.url, windows)
                    published, prod_s, prod_cpu, cfg = producer_backfill(services, prom.url, start_s * 1000,
                                                                         end_s * 1000)
                else:
                    published, prod_s, prod_cpu, cfg = producer_backfill(services, prom.url, start_s * 1000,
                                                                         end_s * 1000)
                    fetched, fetch_s, fetch_cpu = bare_fetch(prom.url, windows)
                on_topic = sum(len(orjson.loads(m.value())["samples"]) for m in read_topic(cfg, cfg.kafka.topic))
                assert published == fetched == on_topic == prom.samples, (published, fetched, on_topic, prom.samples)
                rows.append({"run": run, "first": "bare_fetch" if run % 2 == 0 else "producer",
                             "samples": fetched, "windows": len(windows), "bare_fetch_per_s": fetched / fetch_s,
                             "producer_per_s": published / prod_s, "ratio": (published / prod_s) / (fetched / fetch_s),
                             "producer_cpu_s_per_million": prod_cpu / published * 1e6,
                             "bare_fetch_cpu_s_per_million": fetch_cpu / fetched * 1e6})
                print(json.dumps(rows[-1]), flush=True)
        finally:
            prom.close()
    print(json.dumps({"series": args.series, "points_per_series": n_points, "runs": args.runs,
                      "median_bare_fetch_per_s": statistics.median(r["bare_fetch_per_s"] for r in rows),
                      "median_producer_per_s": statistics.median(r["producer_per_s"] for r in rows),
                      "median_ratio": statistics.median(r["ratio"] for r in rows),
                      "median_producer_cpu_s_per_million": statistics.median(
                          r["producer_cpu_s_per_million"] for r in rows),
                      "median_bare_fetch_cpu_s_per_million": statistics.median(
                          r["bare_fetch_cpu_s_per_million"] for r in rows)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
