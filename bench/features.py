"""B8: `healthpipe features serve` from the stream store beside the same server reading InfluxDB (features.stream
false: the server before #30), in one run: latency, throughput, CPU per request, freshness and memory.

Per series count (`--series`, default 100, 1,000, 10,000): 5 minutes of history (1 sample a second a series)
written to a fresh bucket as the consumer writes it, then live deliveries: every second one message a series on a
topic of its own, stamped with the second it was sent (the scrape time), and a real consumer (a ConsumerThread)
writing them to InfluxDB. Both servers run as their own `healthpipe features serve` processes.

- latency: closed-loop clients on 1, 8 and 32 connections (bench/http_load.py: one asyncio loop in a process of
  its own, so the clients do not share the GIL of this process's producer and consumer), each for `--seconds`;
  two request shapes: one series (`match[instance]=node-k`, k random: what an inference service asks)
  and the whole query (every series; 10,000 series only on one connection, it is a bulk read); p50, p99,
  requests/s, and the server's CPU-s per request (/proc of its process);
- freshness: a delivered sample's scrape time to its first appearance in an answer (a probe asks for node-0 every
  5 ms until `last` is the new value): p50 and p99 for each server; the InfluxDB-reading server's figure is the
  consumer's freshness to InfluxDB (B4's) plus one read;
- memory: each server's RSS once ready (its store filled, before any request) and at the end (after the load:
  32 concurrent requests' arrays and answers, which glibc's per-thread arenas keep).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from bench.support import RESULTS, ROOT, cpu_seconds, status_mb
from healthpipe.common.kafka import ensure_topics
from healthpipe.common.messages import SeriesWindow, headers
from healthpipe.sinks.influx.transformer import DataTransformer
from tests.support.influx import temporary_bucket
from tests.support.pipeline import ConsumerThread, free_port, start_process, wait_until, write_config
from tests.support.services import native_or_exit

QUERY = {"name": "bench", "promql": "bench_metric", "mode": "raw", "metric_type": "gauge"}


def labels(s: int) -> dict[str, str]:
    return {"__name__": "bench_metric", "job": "bench", "instance": f"node-{s}", "zone": f"z{s % 7}"}


def value_at(s: int, ts_ms: int) -> float:
    """A value that names its own timestamp (the freshness probe recognises it) and varies by series."""
    return float(ts_ms // 1000 % 1_000_000) + s / 100_000


def history(cfg, n: int, now_ms: int) -> None:
    """n series × 300 s before now, written straight to InfluxDB as the consumer's own lines."""
    transformer = DataTransformer(cfg.transform)
    windows = [SeriesWindow("bench", "gauge", labels(s), 0, 0,
                            [(now_ms - i * 1000, repr(value_at(s, now_ms - i * 1000))) for i in range(300, 0, -1)])
               for s in range(n)]
    session = requests.Session()
    settings = cfg.load.influxdb
    for first in range(0, n, 50):
        body = b"".join(b for _, b, _ in transformer.transform_bodies(windows[first:first + 50]).bodies)
        r = session.post(f"{settings.url}/api/v2/write", params={"org": settings.org, "bucket": settings.bucket,
                                                                  "precision": "ms"}, data=body, timeout=120,
                         headers={"Authorization": f"Token {settings.token.get_secret_value()}"})
        assert r.status_code == 204, r.text


class Deliveries:
    """One message a series every second on the topic, stamped with the second it is sent."""

    def __init__(self, cfg, n: int):
        from confluent_kafka import Producer

        self.cfg, self.n = cfg, n
        self.producer = Producer({**cfg.kafka.as_librdkafka_dict(), "enable.idempotence": True, "linger.ms": 5})
        self.sent: dict[int, float] = {}  # ts_ms → wall time its messages were all handed to Kafka
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            ts = int(time.time()) * 1000 + 1000
            self.stop.wait(max(0.0, ts / 1000 - time.time()))
            for s in range(self.n):
                w = SeriesWindow("bench", "gauge", labels(s), ts - 1000, ts, [(ts, repr(value_at(s, ts)))])
                self.producer.produce(self.cfg.kafka.topic, key=w.key, value=w.to_json(), headers=headers())
                self.producer.poll(0)
            self.producer.flush(10)
            self.sent[ts] = time.time()


def closed_loop(port: int, connections: int, seconds: float, path: str, keys: int) -> tuple[list[float], int]:
    """`connections` clients, each asking `path` ({k}: a random integer below `keys`) as soon as the last answer
    came, from a process of their own (bench/http_load.py): latencies (s), errors."""
    done = subprocess.run([sys.executable, "-m", "bench.http_load", "--port", str(port), "--connections",
                           str(connections), "--seconds", str(seconds), "--path", path, "--keys", str(keys)],
                          cwd=ROOT, capture_output=True, check=True, timeout=seconds + 120)
    result = json.loads(done.stdout)
    return result["latencies_s"], result["errors"]


def freshness(port: int, deliveries: Deliveries, probes: int) -> list[float]:
    """Seconds from a sample's scrape time to the first answer holding it, for `probes` consecutive deliveries."""
    out = []
    session = requests.Session()
    url = f"http://127.0.0.1:{port}/features"
    for _ in range(probes):
        ts = int(time.time()) * 1000 + 1000  # the next delivery
        want = value_at(0, ts)
        deadline = time.time() + 60
        while time.time() < deadline:
            got = session.get(url, params={"query": "bench", "match[instance]": "node-0", "window": "10s"},
                              timeout=30).json()
            if got["series"] and got["series"][0]["features"]["last"] == want:
                out.append(time.time() - ts / 1000)
                break
            time.sleep(0.005)
    return out


def quantiles(xs: list[float]) -> dict:
    if len(xs) < 2:
        return {"n": len(xs)}
    q = statistics.quantiles(xs, n=100, method="inclusive")
    return {"n": len(xs), "p50_ms": round(statistics.median(xs) * 1000, 2), "p99_ms": round(q[98] * 1000, 2)}


def one_size(services, n: int, seconds: float, tmp: Path, code: Path | None = None) -> dict:
    now_ms = int(time.time()) * 1000
    with temporary_bucket(services.config().load.influxdb, "bench-b8") as bucket:
        cfg = services.config(extract={"queries": [QUERY]}, influxdb={"bucket": bucket.bucket},
                              transform={"valid_metrics": []}, features={"stream_span": "10m"})
        ensure_topics(cfg)
        history(cfg, n, now_ms)
        consumer = ConsumerThread(cfg)
        deliveries = Deliveries(cfg, n)
        deliveries.thread.start()
        servers = {}
        kinds: list[tuple[str, bool, Path | None]] = [("stream", True, None), ("influxdb", False, None)]
        if code is not None:  # the stream server of another checkout, beside this one's
            kinds.insert(1, ("stream-base", True, code))
        for name, stream, checkout in kinds:
            c = cfg.model_copy(update={"features": cfg.features.model_copy(update={"stream": stream})})
            port = free_port()
            proc = start_process("features", write_config(c, tmp / f"{name}-{n}.yaml"), c, "serve", "--port",
                                 str(port), log=tmp / f"{name}-{n}.log", code=checkout)
            servers[name] = (proc, port)
        started = time.monotonic()
        try:
            for name, (_, port) in servers.items():
                wait_until(lambda port=port: _ready(port), 300, what=f"the {name} server ready")
            fill_s = time.monotonic() - started
            time.sleep(5)  # a few deliveries applied: the store's own memory, before any request
            rss_ready = {name: round(status_mb(proc.pid, "VmRSS"), 1) for name, (proc, _) in servers.items()}
            rows = []
            shapes = [("one series", "/features?query=bench&match%5Binstance%5D=node-{k}&window=5m", n),
                      ("all series", "/features?query=bench&window=5m", 0)]
            point = 0
            for shape, path, keys in shapes:
                for connections in (1, 8, 32):
                    if shape == "all series" and n > 1000 and connections > 1:
                        continue
                    # who goes first alternates: the first server of a point measured slower (up to 1.5x the CPU a
                    # request) in runs where two servers ran the same code
                    order = list(servers.items())
                    point += 1
                    for name, (proc, port) in (order if point % 2 else order[::-1]):
                        cpu0 = cpu_seconds(proc.pid)
                        latencies, errors = closed_loop(port, connections, seconds, path, keys)
                        cpu = cpu_seconds(proc.pid) - cpu0
                        rows.append({"server": name, "shape": shape, "connections": connections, **quantiles(latencies),
                                     "requests_per_s": round(len(latencies) / seconds, 1), "errors": errors,
                                     "cpu_ms_per_request": round(cpu / max(1, len(latencies)) * 1000, 3)})
                        print(json.dumps({"series": n, **rows[-1]}), flush=True)
            fresh = {name: quantiles(freshness(port, deliveries, 20)) for name, (_, port) in servers.items()}
            print(json.dumps({"series": n, "freshness": fresh}), flush=True)
            rss = {name: round(status_mb(proc.pid, "VmRSS"), 1) for name, (proc, _) in servers.items()}
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(30)
            deliveries.stop.set()
            deliveries.thread.join(10)
            consumer.stop()
    return {"series": n, "seconds_per_point": seconds, "ready_after_s": round(fill_s, 1), "latency": rows,
            "freshness": fresh, "rss_ready_mb": rss_ready, "rss_mb": rss}


def _ready(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


PLOTS = Path(__file__).resolve().parents[1] / "docs" / "perf"


def plot(path: Path) -> Path:
    """docs/perf/features-latency.png from a results file: p50 and p99 against connections, per series count,
    the stream store beside the InfluxDB-reading server, one panel per request shape."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = json.loads(path.read_text())
    sizes, base_label = result["b8"], result.get("base_label", "before (--code)")
    fig, panels = plt.subplots(1, 2, figsize=(11, 4.6), sharey=True)
    colours = {100: "tab:blue", 1000: "tab:orange", 10000: "tab:green"}
    for ax, shape in zip(panels, ("one series", "all series"), strict=True):
        for size in sizes:
            for server, style in (("stream", "o-"), ("stream-base", "^:"), ("influxdb", "s--")):
                rows = sorted((r for r in size["latency"] if r["shape"] == shape and r["server"] == server
                               and "p99_ms" in r), key=lambda r: r["connections"])
                if not rows:
                    continue
                xs = [r["connections"] for r in rows]
                label = f"{size['series']:,} series, " + {"stream": "stream store", "influxdb": "InfluxDB",
                                                           "stream-base": f"stream store, {base_label}"}[server]
                ax.plot(xs, [r["p99_ms"] for r in rows], style, color=colours.get(size["series"]), label=label)
                ax.plot(xs, [r["p50_ms"] for r in rows], style, color=colours.get(size["series"]), alpha=0.35)
        ax.axhline(5, color="grey", lw=0.8, ls=":")
        ax.axhline(20, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks([1, 8, 32], ["1", "8", "32"])
        ax.set_xlabel("concurrent connections (closed loop)")
        ax.set_title(f"/features, {shape} a request, window 5m")
        ax.grid(True, which="both", alpha=0.3)
    panels[0].set_ylabel("latency, ms (p99 strong; p50 faint); targets 5 and 20 ms grey")
    panels[0].legend(fontsize=7, loc="upper left")  # the left panel has every (size, server) pair
    fig.tight_layout()
    out = PLOTS / "features-latency.png"
    fig.savefig(out, dpi=110)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--seconds", type=float, default=10, help="per (shape, connections, server)")
    parser.add_argument("--code", type=Path, default=None, help="also run the stream server of this checkout "
                        "(`git worktree add /tmp/base <commit>`), as stream-base, side by side")
    parser.add_argument("--base-label", default="before (--code)", help="what the --code server is, for the plot")
    parser.add_argument("--plot", type=Path, default=None, metavar="RESULTS_JSON",
                        help="only draw docs/perf/features-latency.png from a results file")
    args = parser.parse_args()
    if args.plot:
        print(plot(args.plot))
        return 0
    services = native_or_exit()
    RESULTS.mkdir(exist_ok=True)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hp-b8-") as tmp:
        result = {"b8": [one_size(services, n, args.seconds, Path(tmp), args.code) for n in args.series],
                  "base_label": args.base_label}
    path = RESULTS / f"features-{int(time.time())}.json"
    path.write_text(json.dumps(result, indent=2))
    # the picture in BENCHMARKS.md shows every default size: a partial run must not replace it
    drawn = plot(path) if sorted(args.series) == sorted(parser.get_default("series")) else \
        f"(docs/perf/features-latency.png kept: not every size ran; --plot {path} draws this run)"
    print(path, drawn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
