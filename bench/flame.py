"""Flame graph of `healthpipe consumer` loading a pre-filled topic (B2's data), recorded by py-spy.

    python -m bench.flame --label after                       # this checkout
    python -m bench.flame --label before --code /tmp/base     # another checkout, same data and services

The consumer runs as its own process from a full topic to every offset committed, py-spy attached to it
(`--idle` off: the graph shows where CPU goes, not where threads wait). The SVG lands in docs/perf/
as consumer-<label>.svg; open it in a browser (click to zoom). Completeness is checked as in B2.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.run import prefill, run_count
from bench.support import RESULTS, clean_env, config_for, cpu_seconds, process_command
from tests.support.influx import temporary_bucket
from tests.support.pipeline import committed_all
from tests.support.services import native_or_exit

DOCS = Path(__file__).resolve().parents[1] / "docs" / "perf"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--label", required=True, help="the SVG is docs/perf/consumer-<label>.svg")
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--code", type=Path, help="run the consumer from this checkout instead")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    args = parser.parse_args()
    services = native_or_exit()
    RESULTS.mkdir(exist_ok=True)
    DOCS.mkdir(parents=True, exist_ok=True)
    svg = DOCS / f"consumer-{args.label}.svg"
    cfg, ledger = prefill(services, args.samples, seed=7000)
    with temporary_bucket(cfg.load.influxdb, "bench-flame") as bucket, tempfile.TemporaryDirectory() as tmp:
        cfg = cfg.model_copy(update={"load": cfg.load.model_copy(update={"influxdb": bucket})})
        config_file = config_for(cfg, Path(tmp) / "flame.yaml", args.code)
        env = clean_env(HEALTHPIPE_LOAD__INFLUXDB__TOKEN=bucket.token.get_secret_value(),
                        HEALTHPIPE_PIPELINE__LOG_LEVEL="WARNING")
        if args.code is not None:
            env["PYTHONPATH"] = str(args.code)
        log = open(RESULTS / f"flame-{args.label}.log", "ab")  # noqa: SIM115
        consumer = subprocess.Popen(process_command("consumer", config_file, args.code),
                                    env=env,
                                    cwd=args.code, stdout=subprocess.DEVNULL, stderr=log)
        py_spy = Path(sys.executable).parent / "py-spy"
        spy = subprocess.Popen([str(py_spy), "record", "--pid", str(consumer.pid), "--rate", str(args.rate),
                                "--threads", "--format", "flamegraph", "--output", str(svg)],
                               stdout=subprocess.DEVNULL, stderr=log)
        t0 = time.perf_counter()
        try:
            while not committed_all(cfg):
                time.sleep(0.25)
                assert consumer.poll() is None, f"the consumer died; see bench/results/flame-{args.label}.log"
            seconds, cpu = time.perf_counter() - t0, cpu_seconds(consumer.pid)
        finally:
            consumer.send_signal(signal.SIGTERM)
            consumer.wait(60)
            spy.wait(60)  # py-spy writes the SVG when its target exits
        loaded = run_count(cfg, ledger.run)
    assert loaded == len(ledger.truth), f"{loaded} of {len(ledger.truth)} points in InfluxDB"
    print(json.dumps({"label": args.label, "code": str(args.code or "."), "samples": loaded, "seconds": seconds,
                      "samples_per_s": loaded / seconds, "cpu_s_per_million": cpu / loaded * 1e6,
                      "svg": str(svg.relative_to(DOCS.parents[1]))}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
