"""B9: the end-to-end pipeline (B3) on a 3-broker cluster (RF=3, min.insync.replicas=2) against one broker, in
the same run; and the throughput around a leader kill on the cluster, plotted.

Each run switches the native stack between 1 and 3 brokers (`healthpipe stack up --kafka-brokers N`, alternating
which goes first), then runs producer + consumer processes over B1's promtool data set until every sample is
countable in InfluxDB (completeness: the count equals the data set). Rate = samples / seconds.

The failover run (3 brokers) kills -9 the leader of the busiest data partition 40 % into the run and restarts it
10 s later; samples/s in InfluxDB is sampled every 0.5 s. Output: docs/perf/failover.png and the dip: the lowest
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
            "timeline": timeline, "killed_at_s": killed[0] if killed else None}


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = rates(row["timeline"])
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.plot([t for t, _ in series], [r / 1000 for _, r in series], lw=1.5, label="samples/s into InfluxDB")
    ax.axvline(row["killed_at_s"], color="red", ls="--", label="kill -9 partition leader")
    ax.axvspan(row["killed_at_s"], row["killed_at_s"] + 10, color="red", alpha=0.08, label="broker down (10 s)")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("thousand samples/s")
    ax.set_title(f"3-broker cluster, leader kill mid-stream ({row['samples']:,} samples, all loaded)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser()
    add_data_set_args(parser, series=1000, hours=2)
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
                failover = run(services, prom, start_s, Path(tmp), 3, kill_at=0.4)
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
