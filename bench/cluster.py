"""B9: the end-to-end pipeline (B3) on a 3-broker cluster (RF=3, min.insync.replicas=2) against one broker, in
the same run; and the throughput around a leader kill on the cluster, plotted.

Each run switches the native stack between 1 and 3 brokers (`healthpipe stack up --kafka-brokers N`, alternating
which goes first), then runs producer + consumer processes over B1's promtool data set until every sample is
countable in InfluxDB (completeness: the count equals the data set). Rate = samples / seconds.

The failover run (3 brokers) kills -9 the leader of the busiest data partition once `--kill-at` of the samples are
loaded (a quarter by default, so that the recovery has most of the run to show) and restarts it 10 s later; the
samples in InfluxDB are counted every 0.5 s. Output: docs/perf/failover.png (samples in InfluxDB over time, and per
second, with the broker's down time shaded from the kill to the restart as they happened) and the dip: the lowest
1-second rate after the kill, and how long until the rate is back to 80 % of its pre-kill median.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient

from bench.producer import QUERY, BenchPrometheus, add_data_set_args, data_set_span
from bench.support import RESULTS, clean_env, influx_count, process_command
from healthpipe.common.kafka import ensure_topics
from healthpipe.ops import stack
from tests.support import kafka
from tests.support.influx import temporary_bucket
from tests.support.pipeline import write_config
from tests.support.services import native_or_exit

PICTURE = Path(__file__).resolve().parents[1] / "docs" / "perf" / "failover.png"


def run(services, prom: BenchPrometheus, start_s: int, tmp: Path, brokers: int, kill_at: float | None = None) -> dict:
    cfg = services.config(kafka={"bootstrap_servers": stack.bootstrap_servers(brokers),
                                 "replication_factor": 3 if brokers >= 3 else 1},
                          extract={"prometheus_url": prom.url, "queries": [QUERY.model_dump()], "lag_seconds": 1,
                                   "max_backfill": f"{int(time.time()) - start_s + 60}s"},
                          transform={"valid_metrics": [QUERY.promql]})
    timeline: list[tuple[float, int]] = []
    killed = None
    restarted_at = None
    with temporary_bucket(cfg.load.influxdb, "bench-cluster") as bucket:
        cfg = cfg.model_copy(update={"load": cfg.load.model_copy(update={"influxdb": bucket})})
        ensure_topics(cfg)
        config_file = write_config(cfg, tmp / f"cluster-{brokers}.yaml")
        env = clean_env(HEALTHPIPE_LOAD__INFLUXDB__TOKEN=bucket.token.get_secret_value(),
                        HEALTHPIPE_PIPELINE__LOG_LEVEL="WARNING")
        procs = [subprocess.Popen(process_command(name, config_file), env=env,
                                  stdout=subprocess.DEVNULL, stderr=open(RESULTS / f"cluster-{name}.log", "ab"))  # noqa: SIM115
                 for name in ("consumer", "producer")]
        t0 = time.perf_counter()
        try:
            loaded = 0
            while loaded < prom.samples:
                time.sleep(0.5)
                assert all(p.poll() is None for p in procs), "a pipeline process died; see bench/results/cluster-*"
                loaded = influx_count(bucket, 'r.job == "bench"')
                now = time.perf_counter() - t0
                timeline.append((now, loaded))
                if kill_at is not None and killed is None and loaded >= kill_at * prom.samples:
                    ends = kafka.end_offsets(cfg, cfg.kafka.topic)
                    busiest = max(ends, key=ends.__getitem__)
                    meta = AdminClient({"bootstrap.servers": cfg.kafka.bootstrap_servers}).list_topics(timeout=10)
                    killed = (now, meta.topics[cfg.kafka.topic].partitions[busiest].leader)
                    stack.kill(stack.broker_node(killed[1]))
                if killed and killed[1] and now - killed[0] > 10:
                    stack.start(stack.broker_node(killed[1]))
                    restarted_at = time.perf_counter() - t0
                    killed = (killed[0], 0)
            seconds = time.perf_counter() - t0
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(60)
            if killed and killed[1]:
                stack.start(stack.broker_node(killed[1]))
    return {"brokers": brokers, "samples": prom.samples, "seconds": seconds, "samples_per_s": prom.samples / seconds,
            "timeline": timeline, "killed_at_s": killed[0] if killed else None, "restarted_at_s": restarted_at}


def rates(timeline: list[tuple[float, int]]) -> list[tuple[float, float]]:
    """Samples/s over each 1-second step of the timeline."""
    out = []
    for (t0, n0), (t1, n1) in zip(timeline, timeline[2:], strict=False):
        out.append(((t0 + t1) / 2, (n1 - n0) / (t1 - t0)))
    return out


def dip(row: dict) -> dict:
    series = rates(row["timeline"])
    kill = row["killed_at_s"]
    before = [r for t, r in series if t < kill and r > 0]
    after = [(t, r) for t, r in series if t >= kill]
    base = statistics.median(before) if before else 0.0
    lowest = min(r for _, r in after) if after else 0.0
    back = next((t - kill for t, r in after if t > kill + 1 and r >= 0.8 * base), None)
    return {"pre_kill_median_per_s": base, "lowest_per_s_after_kill": lowest, "recovered_to_80pct_after_s": back}


def plot(row: dict, path: Path) -> None:
    """Top: samples in InfluxDB over time (the caption's claim: all of them arrive); bottom: per second. The broker's
    down time is shaded from the kill to its restart as recorded (the end of the run if it never restarted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = rates(row["timeline"])
    kill = row["killed_at_s"]
    back = row.get("restarted_at_s") or row["seconds"]
    recovered = dip(row)["recovered_to_80pct_after_s"]
    fig, (total, rate) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True, height_ratios=[3, 2])
    total.plot([t for t, _ in row["timeline"]], [n / 1000 for _, n in row["timeline"]], lw=1.8,
               label="samples in InfluxDB")
    total.axhline(row["samples"] / 1000, color="grey", ls=":", lw=1, label=f"all {row['samples']:,} samples")
    total.set_ylabel("thousand samples")
    rate.plot([t for t, _ in series], [r / 1000 for _, r in series], lw=1.2, color="tab:green",
              label="samples/s into InfluxDB")
    rate.set_ylabel("thousand samples/s")
    rate.set_xlabel("seconds since the pipeline started")
    for ax in (total, rate):
        ax.axvspan(kill, back, color="red", alpha=0.10, label=f"leader broker down ({back - kill:.0f} s)")
        ax.axvline(kill, color="red", ls="--", lw=1, label="kill -9 of the partition leader")
        if recovered is not None:
            ax.axvline(kill + recovered, color="tab:green", ls="--", lw=1,
                       label=f"rate back to 80 % ({recovered:.0f} s after the kill)")
        ax.grid(alpha=0.3)
    total.legend(loc="upper left", fontsize=8)
    rate.legend(loc="upper right", fontsize=8)
    total.set_title("3-broker cluster (RF 3, min ISR 2): a partition leader killed mid-stream; "
                    "every sample still arrives", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser()
    add_data_set_args(parser, series=1000, hours=2)
    parser.add_argument("--kill-at", type=float, default=0.25, help="kill once this share of the samples is loaded")
    parser.set_defaults(runs=2)
    args = parser.parse_args()
    services = native_or_exit()
    RESULTS.mkdir(exist_ok=True)
    n_points, start_s, _ = data_set_span(args)
    rows = []
    original = stack.kafka_brokers()
    try:
        with tempfile.TemporaryDirectory(prefix="hp-b9-") as tmp:
            prom = BenchPrometheus(Path(tmp), args.series, start_s + args.every, n_points, args.every)
            try:
                for r in range(args.runs):
                    for brokers in ((1, 3) if r % 2 == 0 else (3, 1)):
                        stack.up(brokers=brokers, with_s3=stack.S3.pid() is not None)
                        rows.append(run(services, prom, start_s, Path(tmp), brokers))
                        print(json.dumps({k: v for k, v in rows[-1].items() if k != "timeline"}), flush=True)
                stack.up(brokers=3, with_s3=stack.S3.pid() is not None)
                failover = run(services, prom, start_s, Path(tmp), 3, kill_at=args.kill_at)
            finally:
                prom.close()
    finally:
        stack.up(brokers=original, with_s3=stack.S3.pid() is not None)
    plot(failover, PICTURE)
    one = statistics.median(r["samples_per_s"] for r in rows if r["brokers"] == 1)
    three = statistics.median(r["samples_per_s"] for r in rows if r["brokers"] == 3)
    summary = {"series": args.series, "points_per_series": n_points, "runs": args.runs,
               "one_broker_samples_per_s": one, "three_brokers_samples_per_s": three,
               "ratio_three_vs_one": three / one, "target_ratio": 0.8,
               "failover": {"samples_per_s": failover["samples_per_s"], **dip(failover)}, "picture": str(PICTURE)}
    (RESULTS / f"cluster-{int(time.time())}.json").write_text(json.dumps({"summary": summary, "runs": rows,
                                                                         "failover": failover}, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
