"""B6b: the cold tier's bytes per sample against Prometheus' own storage, on the same samples; and the archiver
writing Iceberg against the hive layout, side by side.

**Bytes** (`python -m bench.cold_tier bytes`). Two sets of samples:
- *real*: a Prometheus scraping itself and a demo app of its own every second (`python -m bench.cold_tier collect`
  starts both, ~/.cache/healthpipe/b6-realdata, ports 9196 and 9198, independent of the native stack; leave them
  running for hours; `collect-stop` stops them by their PIDs), read back raw through its HTTP API (range
  selectors, 30-minute slices) over the last `--hours` (several, `--hours 0.5 1 2`: the set at each length,
  ending at the same moment, and a panel of bytes per sample against the length);
- *synthetic*: bench/archive.py's demo-like series (`up` = 1, slowly moving rates and latencies, 1 s apart).

For each set: the cold tier's compacted form (one file per day, rows sorted by (series, ts), the archiver's
columns and encodings, files.encode) in bytes per sample, under each encoding choice the issue names; and
Prometheus' TSDB blocks for exactly those samples (an OpenMetrics export of them through `promtool tsdb
create-blocks-from openmetrics`: the chunks and the index of the blocks it writes).

**Formats** (`python -m bench.cold_tier formats --samples N --runs R`): one pre-filled topic (B2's ledger), the
archiver with `archive.format: parquet` and with `iceberg`, alternating who goes first: samples/s, CPU-s per
million samples, peak RSS, bytes per sample; each output read back and equal to the ledger.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import requests

from bench.support import RESULTS

REAL = Path.home() / ".cache" / "healthpipe" / "b6-realdata"
REAL_PORT = 9196  # not the stack's: 9096 is the third broker's listener in the 3-broker cluster
DEMO_PORT = 9198
JOBS = ("prometheus", "demo-app")
SLICE_S = 1800
PROMETHEUS_CONFIG = f"""# bench/cold_tier.py's real set: Prometheus' own metrics and a demo app, scraped every second
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: prometheus
    static_configs: [{{targets: ["127.0.0.1:{REAL_PORT}"]}}]
  - job_name: demo-app
    static_configs: [{{targets: ["127.0.0.1:{DEMO_PORT}"]}}]
"""


# --- the sample sets --------------------------------------------------------------------------------------------

Series = dict[tuple[tuple[str, str], ...], tuple[list[int], list[float]]]


def _running(name: str) -> int | None:
    """The PID in REAL/<name>.pid if that process is alive."""
    pid_file = REAL / f"{name}.pid"
    if pid_file.exists() and Path(f"/proc/{pid_file.read_text().strip()}").exists():
        return int(pid_file.read_text())
    return None


def collect() -> int:
    """Start the 1 s scraping Prometheus and its demo app (once; they keep running, the TSDB outside the work
    tree). Their own: the set must not depend on whether the native stack is up."""
    REAL.mkdir(parents=True, exist_ok=True)
    (REAL / "prometheus.yml").write_text(PROMETHEUS_CONFIG)
    commands = {
        "demo-app": [sys.executable, "-m", "healthpipe", "demo-app", "--host", "127.0.0.1", "--port", str(DEMO_PORT)],
        "prometheus": ["prometheus", f"--config.file={REAL / 'prometheus.yml'}", f"--storage.tsdb.path={REAL / 'tsdb'}",
                       f"--web.listen-address=127.0.0.1:{REAL_PORT}", "--storage.tsdb.retention.time=30d"]}
    for name, command in commands.items():
        if pid := _running(name):
            print(f"{name}: already running (pid {pid})")
            continue
        with open(REAL / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        (REAL / f"{name}.pid").write_text(str(proc.pid))
        print(f"{name}: started (pid {proc.pid})")
    print(f"collecting into {REAL}: http://127.0.0.1:{REAL_PORT}")
    return 0


def collect_stop() -> int:
    """Stop what `collect` started, by the PIDs it recorded (SIGTERM: Prometheus closes its head cleanly)."""
    for name in ("prometheus", "demo-app"):
        if pid := _running(name):
            os.kill(pid, signal.SIGTERM)
            print(f"{name}: stopped (pid {pid})")
    return 0


def real_samples(hours: float, end_s: float | None = None) -> tuple[Series, float, float]:
    """Every raw sample the collecting Prometheus holds for the last `hours`, per series."""
    end_s = end_s or time.time() - 60  # a minute back: every target's last scrape is in
    start_s = end_s - hours * 3600
    series: Series = {}
    for job in JOBS:  # fixed job names, not input: no quoting needed beyond the literal below
        since = start_s
        while since < end_s:
            t = min(since + SLICE_S, end_s)
            span_ms = round((t - since) * 1000)  # a range selector holds (t - span, t]: slices do not overlap
            answer = requests.get(f"http://127.0.0.1:{REAL_PORT}/api/v1/query", timeout=300,
                                  params={"query": f'{{job="{job}"}}[{span_ms}ms]', "time": f"{t:.3f}"})
            answer.raise_for_status()
            for result in orjson.loads(answer.content)["data"]["result"]:
                key = tuple(sorted(result["metric"].items()))
                ts, values = series.setdefault(key, ([], []))
                for stamp, value in result["values"]:
                    ts.append(round(stamp * 1000))
                    values.append(float(value))
            since = t
    return series, start_s, end_s


def synthetic_samples(series_count: int = 300, points: int = 3600) -> Series:
    """bench/archive.py's demo-like data, as series."""
    from bench.archive import demo_like

    series: Series = {}
    for _key, value, _headers in demo_like("b6b", series_count, points, 1_764_000_000_000):
        doc = orjson.loads(value)
        key = tuple(sorted(doc["labels"].items()))
        ts, values = series.setdefault(key, ([], []))
        for stamp, v in doc["samples"]:
            ts.append(stamp)
            values.append(float(v))
    return series


# --- the cold tier's bytes ----------------------------------------------------------------------------------------

def cold_table(series: Series, order: str = "series") -> pa.Table:
    """The rows the compaction writes: the archiver's columns, ts in microseconds (Iceberg), sorted by
    (series, ts); order="time": as the archiver appends them before compaction (by time across series)."""
    from healthpipe.common.messages import SeriesWindow

    keys, ts_parts, value_parts, index_parts = [], [], [], []
    for i, (labels, (ts, values)) in enumerate(sorted(series.items())):
        d = dict(labels)
        window = SeriesWindow("tsdb", "untyped", d, 0, 0, [])
        keys.append((window.key.decode(), d.get("__name__", ""), orjson.dumps(d).decode()))
        ts_parts.append(np.asarray(ts, dtype=np.int64))
        value_parts.append(np.asarray(values, dtype=np.float64))
        index_parts.append(np.full(len(ts), i, dtype=np.int32))
    ts_all, values_all, index = np.concatenate(ts_parts), np.concatenate(value_parts), np.concatenate(index_parts)
    order_rows = np.lexsort((ts_all, index)) if order == "series" else np.lexsort((index, ts_all))
    ts_all, values_all, index = ts_all[order_rows], values_all[order_rows], index[order_rows]
    idx = pa.array(index)
    label_maps = [orjson.loads(k[2]) for k in keys]
    labels = pa.MapArray.from_arrays(pa.array(np.cumsum([0] + [len(m) for m in label_maps]).astype(np.int32)),
                                     pa.array([k for m in label_maps for k in m]),
                                     pa.array([v for m in label_maps for v in m.values()]))
    return pa.table({
        "ts": pa.array(ts_all * 1000, pa.timestamp("us", tz="UTC")),
        "value": pa.array(values_all),
        "metric": pa.DictionaryArray.from_arrays(idx, pa.array([k[1] for k in keys])),
        "query": pa.DictionaryArray.from_arrays(idx, pa.array(["tsdb"] * len(keys))),
        "metric_type": pa.DictionaryArray.from_arrays(idx, pa.array(["untyped"] * len(keys))),
        "series": pa.DictionaryArray.from_arrays(idx, pa.array([k[0] for k in keys])),
        "labels": labels.take(idx),
    })


VARIANTS = {  # name → (row order, files.encode keyword arguments)
    "today (sorted, PLAIN values, zstd 6)": ("series", {}),
    "unsorted (arrival order), zstd 6": ("time", {}),
    "BYTE_STREAM_SPLIT values, zstd 6": ("series", {"value_encoding": "BYTE_STREAM_SPLIT"}),
    "PLAIN values, zstd 3": ("series", {"level": 3}),
    "PLAIN values, zstd 9": ("series", {"level": 9}),
    "PLAIN values, zstd 19": ("series", {"level": 19}),
    "BYTE_STREAM_SPLIT values, zstd 19": ("series", {"value_encoding": "BYTE_STREAM_SPLIT", "level": 19}),
    "PLAIN values, zstd 6, 128k-row groups": ("series", {"row_group_rows": 131_072}),
}


def cold_bytes(series: Series) -> dict[str, dict]:
    from healthpipe.sinks.archive.files import encode

    out = {}
    tables = {order: cold_table(series, order) for order in ("series", "time")}
    n = tables["series"].num_rows
    for name, (order, kwargs) in VARIANTS.items():
        t0 = time.process_time()
        data = encode(tables[order], store_schema=False, **kwargs)
        out[name] = {"bytes": len(data), "bytes_per_sample": len(data) / n,
                     "encode_cpu_s_per_million": (time.process_time() - t0) / n * 1e6}
    return out


# --- Prometheus' bytes ----------------------------------------------------------------------------------------------

def openmetrics(series: Series, path: Path) -> int:
    """The samples as OpenMetrics text (families together, `# EOF` last); the number of samples."""
    n = 0
    with open(path, "w") as f:
        for labels, (ts, values) in sorted(series.items(), key=lambda kv: (dict(kv[0]).get("__name__", ""), kv[0])):
            d = dict(labels)
            name = d.pop("__name__", "unnamed")
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(d.items()))
            head = f"{name}{{{text}}}" if text else name
            for stamp, value in zip(ts, values, strict=True):
                f.write(f"{head} {_value(value)} {stamp / 1000:.3f}\n")
            n += len(ts)
        f.write("# EOF\n")
    return n


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _value(v: float) -> str:
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def prometheus_bytes(series: Series, work: Path) -> dict:
    """Blocks promtool builds from exactly these samples: chunks + index bytes."""
    text, blocks = work / "samples.om", work / "blocks"
    n = openmetrics(series, text)
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(text), str(blocks)], check=True,
                   stdout=subprocess.DEVNULL)
    chunks = sum(f.stat().st_size for f in blocks.glob("*/chunks/*"))
    index = sum(f.stat().st_size for f in blocks.glob("*/index"))
    text.unlink()
    return {"samples": n, "blocks": len(list(blocks.glob("*/meta.json"))), "chunks_bytes": chunks,
            "index_bytes": index, "bytes_per_sample": (chunks + index) / n,
            "chunks_bytes_per_sample": chunks / n}


def bytes_report(hours: list[float], end_s: float | None = None) -> dict:
    """Both sets; with several `hours`, the real set at each length (the same end: each shorter set the newest part
    of the longer), the longest reported in full, every length in `real_by_hours`. `end_s`: the real set's end
    (default a minute ago), for a collection that stopped and was started again: a window must not span the gap."""
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="hp-b6b-") as tmp:
        sets = {}
        if _running("prometheus"):
            end_s = end_s or time.time() - 60  # a minute back: every target's last scrape is in
            out["real_by_hours"] = []
            for h in sorted(hours):
                series, start_s, _ = real_samples(h, end_s)
                if h == max(hours):
                    sets["real"] = series
                    out["real_window"] = {"from": start_s, "to": end_s, "hours": h}
                else:
                    out["real_by_hours"].append({"hours": h, **_measure(series, Path(tmp) / f"real-{h}", brief=True)})
        else:
            print("no collecting Prometheus (python -m bench.cold_tier collect): the real set is skipped")
        sets["synthetic"] = synthetic_samples()
        for name, series in sets.items():
            out[name] = _measure(series, Path(tmp) / name)
        if "real" in out:
            out["real_by_hours"].append({"hours": max(hours), **{k: out["real"][k] for k in (
                "series", "samples", "prometheus_bytes_per_sample", "today_bytes_per_sample", "best",
                "best_bytes_per_sample", "today_vs_prometheus", "best_vs_prometheus")}})
    return out


def _measure(series: Series, work: Path, brief: bool = False) -> dict:
    """Prometheus' blocks and the cold tier's encodings for one set of samples (brief: the summary figures only)."""
    work.mkdir()
    samples = sum(len(ts) for ts, _ in series.values())
    prom = prometheus_bytes(series, work)
    assert prom["samples"] == samples
    cold = cold_bytes(series)
    shutil.rmtree(work)
    best = min(cold, key=lambda k: cold[k]["bytes_per_sample"])
    today = cold[next(iter(VARIANTS))]["bytes_per_sample"]
    figures = {"series": len(series), "samples": samples,
               "prometheus_bytes_per_sample": prom["bytes_per_sample"], "today_bytes_per_sample": today,
               "best": best, "best_bytes_per_sample": cold[best]["bytes_per_sample"],
               "today_vs_prometheus": today / prom["bytes_per_sample"],
               "best_vs_prometheus": cold[best]["bytes_per_sample"] / prom["bytes_per_sample"]}
    return figures if brief else {**figures, "prometheus": prom, "cold": cold}


def plot(report: dict, path: Path) -> None:
    """One panel per sample set: the cold tier's bytes per sample under each encoding, Prometheus' as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [name for name in ("real", "synthetic") if name in report]
    curve = sorted(report.get("real_by_hours", []), key=lambda r: r["hours"])
    panels = len(sets) + (len(curve) > 1)
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.6), squeeze=False)
    if len(curve) > 1:  # the real set's bytes per sample against its length: does the ratio hold as it grows?
        ax = axes[0][-1]
        xs = [r["hours"] for r in curve]
        ax.plot(xs, [r["prometheus_bytes_per_sample"] for r in curve], "k--o", label="Prometheus TSDB (chunks + index)")
        ax.plot(xs, [r["today_bytes_per_sample"] for r in curve], "o-", color="tab:green",
                label="cold tier, compacted (PLAIN, zstd 6)")
        ax.plot(xs, [r["best_bytes_per_sample"] for r in curve], "s:", color="tab:blue",
                label="cold tier, best encoding measured")
        for r in curve:
            ax.annotate(f"{r['today_vs_prometheus']:.2f}×", (r["hours"], r["today_bytes_per_sample"]), fontsize=8,
                        textcoords="offset points", xytext=(0, -12), ha="center")
        ax.set_xlabel("hours back from the set's end (each the newest part of the longest)")
        ax.set_ylabel("bytes per sample")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("real set by length (labels: cold tier ÷ Prometheus)", fontsize=10)
    for ax, name in zip(axes[0], sets, strict=False):
        data = report[name]
        names = list(data["cold"])
        values = [data["cold"][n]["bytes_per_sample"] for n in names]
        prom = data["prometheus"]["bytes_per_sample"]
        colours = ["tab:green" if v <= prom else "tab:red" for v in values]
        ax.barh(range(len(names)), values, color=colours)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.invert_yaxis()
        ax.axvline(prom, color="black", linestyle="--")
        ax.set_xlim(0, max(*values, prom) * 1.3)  # room for the labels right of the longest bar and the line
        ax.text(prom, len(names) - 0.4, f" Prometheus TSDB {prom:.2f}", fontsize=8, va="bottom")
        for i, v in enumerate(values):
            ax.text(v, i, f" {v:.2f}", va="center", fontsize=8)
        ax.set_xlabel("bytes per sample (lower is better)")
        ax.set_title(f"{name}: {data['series']:,} series, {data['samples']:,} samples", fontsize=10)
    fig.suptitle("Cold tier (Parquet, float64 value) vs Prometheus' blocks for the same samples", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


# --- parquet against iceberg ----------------------------------------------------------------------------------------

def formats_report(samples: int, runs: int, code: Path | None = None) -> dict:
    """Parquet, Iceberg and the InfluxDB consumer on the same topic; with `code`, also the Iceberg archiver of that
    checkout ("iceberg_base"), for a change to it measured side by side."""
    from bench.archive import run_archive
    from bench.run import b2_consumer, prefill
    from healthpipe.sinks.archive.compact import compact
    from healthpipe.sinks.archive.iceberg import IcebergTable
    from healthpipe.sinks.archive.store import Store
    from tests.integration import test_archive, test_archive_iceberg
    from tests.support.influx import temporary_bucket
    from tests.support.services import native_or_exit

    services = native_or_exit()
    rows = []
    with tempfile.TemporaryDirectory(prefix="hp-b6f-") as tmp:
        def measure(name: str, cfg, ledger, run: int, tag: str) -> dict:
            """One contender from start to every offset of the topic committed; the archive read back whole."""
            n = len(ledger.truth)  # one entry a sample
            if name == "consumer":
                with temporary_bucket(cfg.load.influxdb, "bench-b6b") as bucket:
                    target = cfg.model_copy(update={"load": cfg.load.model_copy(update={"influxdb": bucket})})
                    return b2_consumer(target, ledger, RESULTS)
            folder = Path(tmp) / f"{name}-{run}-{tag}"
            archive = {"target": str(folder), "max_file_rows": 100_000, "max_file_age_seconds": 1,
                       "format": name.removesuffix("_base"), "group_id": f"bench-{name}-{run}-{tag}-{os.getpid()}",
                       "iceberg": {"catalog_uri": f"sqlite:///{folder}.db"}}
            mine = services.config(kafka={"topic": cfg.kafka.topic}, archive=archive)
            result = run_archive(mine, Path(tmp), code=code if name == "iceberg_base" else None)
            if name.startswith("iceberg"):
                got = test_archive_iceberg.archived(mine)
                table = IcebergTable(mine.archive, Store(mine.archive))
                size = sum(p.bytes for p in table.partitions())
                if tag != "start":
                    done = compact(table, None, mine.archive.iceberg.compact_file_rows)
                    result |= {"compaction_s_per_million_rows": sum(c.seconds for c in done)
                               / sum(c.rows_before for c in done) * 1e6,
                               "compacted_bytes_per_sample": sum(p.bytes for p in table.partitions()) / n}
            else:
                got = test_archive.archived(mine, ledger)
                size = sum(s for p, s in Store(mine.archive).list() if p.endswith(".parquet"))
            assert got == test_archive.truth(ledger), f"{name}: archive incomplete or with extra rows"
            shutil.rmtree(folder, ignore_errors=True)
            return result | {"samples_per_s": n / result["seconds"], "cpu_s_per_million": result["cpu_s"] / n * 1e6,
                             "bytes_per_sample": size / n}

        for run in range(runs):
            order = ["parquet", "iceberg", "consumer"] + (["iceberg_base"] if code else [])
            order = order[run % len(order):] + order[:run % len(order)]  # who goes first rotates
            # Each contender's fixed cost (imports, the group join, a table's creation, the last files' age): the
            # same command on a topic of one 1,000-sample message, as B2 measures the consumer's start
            small_cfg, small = prefill(services, 1000, seed=6500 + run)
            starts = {name: measure(name, small_cfg, small, run, "start")["seconds"] for name in order}
            cfg, ledger = prefill(services, samples, seed=6000 + run)
            row: dict = {"run": run}
            for name in order:
                row[name] = measure(name, cfg, ledger, run, "full")
                row[name] |= {"start_s": starts[name],
                              "after_start_samples_per_s": samples / max(1e-9, row[name]["seconds"] - starts[name])}
            row["iceberg_vs_parquet_samples_per_s"] = row["iceberg"]["samples_per_s"] / row["parquet"]["samples_per_s"]
            row["iceberg_vs_parquet_cpu"] = row["iceberg"]["cpu_s_per_million"] / row["parquet"]["cpu_s_per_million"]
            if code:
                row["iceberg_vs_base_samples_per_s"] = (row["iceberg"]["samples_per_s"]
                                                        / row["iceberg_base"]["samples_per_s"])
                row["iceberg_vs_base_cpu"] = (row["iceberg"]["cpu_s_per_million"]
                                              / row["iceberg_base"]["cpu_s_per_million"])
            for name in ("parquet", "iceberg"):
                row[f"{name}_vs_consumer_samples_per_s"] = (row[name]["samples_per_s"]
                                                            / row["consumer"]["samples_per_s"])
                row[f"{name}_vs_consumer_after_start"] = (row[name]["after_start_samples_per_s"]
                                                          / row["consumer"]["after_start_samples_per_s"])
            print(json.dumps(row), flush=True)
            rows.append(row)
    return {"samples": samples, "runs": rows,
            **{f"median_{k}": statistics.median(r[k] for r in rows) for k in (
                "iceberg_vs_parquet_samples_per_s", "iceberg_vs_parquet_cpu", "parquet_vs_consumer_samples_per_s",
                "iceberg_vs_consumer_samples_per_s", "parquet_vs_consumer_after_start",
                "iceberg_vs_consumer_after_start", *(["iceberg_vs_base_samples_per_s", "iceberg_vs_base_cpu"]
                                                       if code else []))},
            "code": str(code) if code else None,
            "iceberg_peak_rss_mb_max": max(r["iceberg"]["peak_rss_mb"] for r in rows),
            "compaction_s_per_million_rows": statistics.median(
                r["iceberg"]["compaction_s_per_million_rows"] for r in rows)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["collect", "collect-stop", "bytes", "formats"])
    parser.add_argument("--hours", type=float, nargs="+", default=[6.0],
                        help="bytes: the real set's length (default 6); several: the ratio against the length")
    parser.add_argument("--end", type=float, default=None, metavar="UNIX_SECONDS",
                        help="bytes: the real set ends here (default a minute ago)")
    parser.add_argument("--samples", type=int, default=1_000_000, help="formats: samples per run")
    parser.add_argument("--runs", type=int, default=2, help="formats: runs")
    parser.add_argument("--code", type=Path, default=None, metavar="CHECKOUT",
                        help="formats: also run the Iceberg archiver of this checkout (a worktree of the commit "
                             "before a change), side by side")
    parser.add_argument("--plot", type=Path, default=None, metavar="RESULTS_JSON",
                        help="bytes: draw the picture of an earlier run's results, measuring nothing")
    args = parser.parse_args()
    if args.what == "collect":
        return collect()
    if args.what == "collect-stop":
        return collect_stop()
    picture = Path(__file__).resolve().parents[1] / "docs" / "perf" / "cold-tier-bytes.png"
    if args.what == "bytes" and args.plot:
        plot(json.loads(args.plot.read_text()), picture)
        return 0
    RESULTS.mkdir(exist_ok=True)
    if args.what == "bytes":
        report = bytes_report(args.hours, args.end)
    else:
        report = formats_report(args.samples, args.runs, args.code)
    if args.what == "bytes":
        plot(report, picture)
    (RESULTS / f"cold-tier-{args.what}-{int(time.time())}.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
