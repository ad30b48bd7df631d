"""B12: the consumer inside the image against the native consumer, on the same pre-filled topic, side by side.

    python -m bench.image [--samples 2000000] [--runs 3] [--image healthpipe:0.2.0]

Each run pre-fills one topic, then both consumers read all of it (each under a group of its own, into an empty
bucket of its own), alternating which goes first. The image runs as users run it: `docker run --network host`,
its entry point, its config from a mounted file. Wall time is start to every offset committed (the same
`run_until_committed` for both); the container's CPU comes from its cgroup (tini + the consumer), the native
process's from /proc. Every run checks that InfluxDB holds every point. Needs a Docker engine and the image
(scripts/docker/engine.sh start; make image PYTHON_IMAGE=local).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from bench.run import b2_consumer, prefill, run_count
from bench.support import RESULTS, check_sample_of_points, influxd_settled, run_until_committed
from tests.docker.conftest import image_name
from tests.support.influx import temporary_bucket
from tests.support.pipeline import write_config
from tests.support.services import native_or_exit


def _container_cpu_seconds(container_id: str) -> float:
    """CPU of every process in the container (cgroup v1 cpuacct, or v2 cpu.stat)."""
    for path in (f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage",
                 f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat"):
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        if path.endswith("cpuacct.usage"):
            return int(text) / 1e9
        return int(dict(line.split() for line in text.splitlines())["usage_usec"]) / 1e6
    return float("nan")


def image_consumer(cfg, ledger, image: str, tmp: Path) -> dict:
    group = f"{cfg.kafka.group_id}-image"
    cfg = cfg.model_copy(update={"kafka": cfg.kafka.model_copy(update={"group_id": group})})
    config_dir = tmp / f"image-{uuid.uuid4().hex[:6]}"
    config_dir.mkdir(mode=0o755)
    config_dir.chmod(0o755)
    write_config(cfg, config_dir / "healthpipe.yaml").chmod(0o644)
    name = f"hp-bench-{uuid.uuid4().hex[:8]}"
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin",
           "HEALTHPIPE_LOAD__INFLUXDB__TOKEN": cfg.load.influxdb.token.get_secret_value()}
    settled = influxd_settled()
    t0 = time.perf_counter()
    proc = subprocess.Popen(["docker", "run", "--rm", "--name", name, "--network", "host",
                             "-v", f"{config_dir}:/config:ro", "-e", "HEALTHPIPE_CONFIG=/config/healthpipe.yaml",
                             "-e", "HEALTHPIPE_LOAD__INFLUXDB__TOKEN", "-e", "HEALTHPIPE_PIPELINE__LOG_LEVEL=WARNING",
                             image, "consumer"], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(RESULTS / "image-consumer.log", "ab"))  # noqa: SIM115
    try:
        run_until_committed(proc, cfg, group, "the image's consumer (see bench/results/image-consumer.log)")
        seconds = time.perf_counter() - t0
        cid = subprocess.run(["docker", "inspect", "--format", "{{.Id}}", name], capture_output=True,
                             text=True).stdout.strip()
        cpu = _container_cpu_seconds(cid)
    finally:
        subprocess.run(["docker", "stop", "--time", "60", name], capture_output=True)
        proc.wait(90)
    n = len(ledger.truth)
    loaded = run_count(cfg, ledger.run)
    assert loaded == n, f"image consumer incomplete: {loaded} of {n} points in InfluxDB"
    return {"samples": n, "seconds": seconds, "samples_per_s": n / seconds, "influxd_settle_s": settled,
            "points_compared_whole": check_sample_of_points(cfg.load.influxdb, ledger, seed=n),
            "cpu_s_per_million": cpu / n * 1e6}


def one_run(services, n: int, run: int, image: str) -> dict:
    with ExitStack() as buckets:
        def fresh(cfg):
            settings = buckets.enter_context(temporary_bucket(cfg.load.influxdb, "bench"))
            return cfg.model_copy(update={"load": cfg.load.model_copy(update={"influxdb": settings})})

        cfg, ledger = prefill(services, n, seed=12_000 + run)
        row: dict = {"run": run}
        order = ["native", "image"] if run % 2 == 0 else ["image", "native"]
        for side in order:
            if side == "native":
                row["native"] = b2_consumer(fresh(cfg), ledger, RESULTS, group=f"{cfg.kafka.group_id}-native")
            else:
                row["image"] = image_consumer(fresh(cfg), ledger, image, RESULTS)
    row["ratio_image_vs_native"] = row["image"]["samples_per_s"] / row["native"]["samples_per_s"]
    row["first"] = order[0]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--image", default=image_name())
    args = parser.parse_args()
    services = native_or_exit()
    RESULTS.mkdir(exist_ok=True)
    rows = []
    for run in range(args.runs):
        rows.append(one_run(services, args.samples, run, args.image))
        print(json.dumps(rows[-1]), flush=True)
    summary = {"image": args.image, "samples": args.samples, "runs": args.runs,
               "ratio_image_vs_native_median": statistics.median(r["ratio_image_vs_native"] for r in rows),
               "ratios": [round(r["ratio_image_vs_native"], 3) for r in rows],
               "native_samples_per_s_median": statistics.median(r["native"]["samples_per_s"] for r in rows),
               "image_samples_per_s_median": statistics.median(r["image"]["samples_per_s"] for r in rows),
               "native_cpu_s_per_million_median": statistics.median(r["native"]["cpu_s_per_million"] for r in rows),
               "image_cpu_s_per_million_median": statistics.median(r["image"]["cpu_s_per_million"] for r in rows)}
    (RESULTS / f"image-{int(time.time())}.json").write_text(json.dumps({"summary": summary, "runs": rows}, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
