"""The consumer's performance history, re-measured: each step's commit on B2's data, side by side in one run.

    python -m bench.steps --runs 3            # ~1 min a run per step; writes docs/perf/steps.png
    python -m bench.steps --compare abc1234   # one change: that commit against this checkout, side by side

Each step's commit is checked out under /tmp/hp-steps/<commit> (its compiled hot path built in place where it
has one) and its `healthpipe consumer` loads the same pre-filled topic into an empty bucket of its own, with
its own defaults, from start to every offset committed (bench/run.py's b2_consumer: completeness checked).
Within a run every step reads the same topic, in an order that alternates between runs. The plot puts each
step at (CPU-s per million samples, samples/s), medians; the InfluxDB ceiling of the run is a line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from bench.run import b0_influx_ceiling, b2_consumer, prefill
from bench.support import RESULTS, ROOT
from tests.support.influx import temporary_bucket
from tests.support.services import native_or_exit

WORKTREES = Path("/tmp/hp-steps")
# (commit, what it changed); the last is this checkout's HEAD whatever its hash.
STEPS = [
    ("bdadeee", "before (orjson + pandas, influxdb-client, 5k lines a write)"),
    ("7814e41", "msgspec decode + numpy transform"),
    ("844ab49", "compiled line formatting (C)"),
    ("75a2041", "plain decimals without a float round trip"),
    ("4737684", "urllib3 POSTs instead of influxdb-client"),
    ("86dbce3", "10k lines a write"),
    ("6ffa357", "samples left as JSON text, formatted in C"),
    ("HEAD", "lighter start, request bodies as bytes in C, early writers"),
]


def checkout(commit: str) -> Path | None:
    """A worktree of `commit` with its C extension built in place (None: this checkout)."""
    if commit == "HEAD":
        return None
    tree = WORKTREES / commit
    if not tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-f", "--detach", str(tree), commit], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if (tree / "healthpipe" / "schema" / "_fastline.c").exists() or (tree / "consumer" / "_fastline.c").exists():
        subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tree, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return tree


def plot(summary: list[dict], ceiling: float, out: Path, ceiling_writers: float | None = None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    xs = [s["cpu_s_per_million"] for s in summary]
    ys = [s["samples_per_s"] / 1000 for s in summary]
    ax.plot(xs, ys, "-o", color="tab:blue")
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        ax.annotate(str(i), (x, y), textcoords="offset points", xytext=(7, -4), fontsize=10, weight="bold")
    legend = "\n".join(f"{i}. {s['what']} ({s['commit']})" for i, s in enumerate(summary))
    ax.text(0.02, 0.03, legend, transform=ax.transAxes, fontsize=8, va="bottom",
            bbox={"facecolor": "white", "alpha": 0.9, "edgecolor": "0.8"})
    ax.axhline(ceiling / 1000, color="tab:red", linestyle="--", linewidth=1)
    ax.text(max(xs) * 1.08, ceiling / 1000, "InfluxDB ceiling, 1 connection", color="tab:red", ha="right",
            va="bottom", fontsize=8)
    if ceiling_writers:
        ax.axhline(ceiling_writers / 1000, color="tab:purple", linestyle=":", linewidth=1)
        ax.text(max(xs) * 1.08, ceiling_writers / 1000, "InfluxDB ceiling, 2 connections", color="tab:purple",
                ha="right", va="bottom", fontsize=8)
    ax.set_xlabel("consumer CPU-s per million samples (lower is better)")
    ax.set_ylabel("thousand samples/s into InfluxDB")
    ax.set_xlim(0, max(xs) * 1.1)
    ax.set_ylim(0, max(max(ys), ceiling / 1000, (ceiling_writers or 0) / 1000) * 1.15)
    ax.set_title("healthpipe consumer, step by step (python -m bench.steps; medians of the runs)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--plot-only", type=Path, help="redraw docs/perf/steps.png from a steps-*.json result")
    parser.add_argument("--compare", metavar="COMMIT", help="only COMMIT against this checkout, side by side (an A/B "
                        "of one change; the plot is left alone)")
    args = parser.parse_args()
    if args.plot_only:
        done = json.loads(args.plot_only.read_text())
        plot(done["steps"], done["ceiling_samples_per_s"], ROOT / "docs" / "perf" / "steps.png",
             done.get("ceiling_writers_samples_per_s"))
        return 0
    services = native_or_exit()
    RESULTS.mkdir(exist_ok=True)
    steps = [(args.compare, "before"), ("HEAD", "this checkout")] if args.compare else STEPS
    trees = {commit: checkout(commit) for commit, _ in steps}
    writers = services.config().consumer.writers
    rows: list[dict] = []
    for run in range(args.runs):
        with ExitStack() as buckets:
            def fresh(cfg):
                settings = buckets.enter_context(temporary_bucket(cfg.load.influxdb, "bench-steps"))
                return cfg.model_copy(update={"load": cfg.load.model_copy(update={"influxdb": settings})})

            row: dict = {"run": run, "ceiling": b0_influx_ceiling(fresh(services.config()), args.samples,
                                                                   seed=8000 + run)["samples_per_s"],
                         "ceiling_writers": b0_influx_ceiling(fresh(services.config()), args.samples, seed=8500 + run,
                                                              connections=writers)["samples_per_s"]}
            cfg, ledger = prefill(services, args.samples, seed=9000 + run)
            order = steps[::-1] if run % 2 else steps
            for commit, _ in order:
                r = b2_consumer(fresh(cfg), ledger, RESULTS, code=trees[commit], group=f"steps-{commit}-{run}")
                row[commit] = {k: r[k] for k in ("samples_per_s", "cpu_s_per_million", "peak_rss_mb")}
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = [{"commit": c, "what": what,
                **{k: statistics.median(r[c][k] for r in rows) for k in ("samples_per_s", "cpu_s_per_million",
                                                                          "peak_rss_mb")}} for c, what in steps]
    ceiling = statistics.median(r["ceiling"] for r in rows)
    ceiling_writers = statistics.median(r["ceiling_writers"] for r in rows)
    out = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "samples": args.samples, "runs": rows,
           "ceiling_samples_per_s": ceiling, "ceiling_writers_samples_per_s": ceiling_writers, "steps": summary}
    name = f"steps-compare-{args.compare}" if args.compare else "steps"
    (RESULTS / f"{name}-{int(time.time())}.json").write_text(json.dumps(out, indent=2))
    if not args.compare:
        plot(summary, ceiling, ROOT / "docs" / "perf" / "steps.png", ceiling_writers)
    print(json.dumps({"ceiling_samples_per_s": ceiling, "ceiling_writers_samples_per_s": ceiling_writers,
                      "steps": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
