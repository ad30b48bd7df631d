"""`make up` without a Docker engine: the stack, the storage tiers, then producer, consumer, archive and the feature
server in the background; `make down` stops them in reverse."""

from __future__ import annotations

import os

from healthpipe.ops.stack.influxdb import influx_dir, influx_url
from healthpipe.ops.stack.paths import PORTS, ROOT, STACK_DIR
from healthpipe.ops.stack.supervise import start, stop
from healthpipe.ops.stack.topology import PIPELINE, stack_env


def pipeline_up() -> None:
    """The stack, the storage tiers, then the pipeline in the background (make up without a Docker engine)."""
    from healthpipe.ops.stack import up  # the stack itself: its package's entry point
    from healthpipe.ops.stack.security import is_secure

    up(secure=is_secure())  # a secured stack stays secured: each pipeline process then runs as its role
    _apply_tiers()
    for svc in PIPELINE:
        start(svc)
    print(f"""
healthpipe is running (native stack, no Docker):
  Prometheus  http://127.0.0.1:{PORTS.prometheus}      demo app  http://127.0.0.1:{PORTS.demo_app}/metrics
  InfluxDB    {influx_url()}      token in {influx_dir() / 'token'}
  producer    {PORTS.producer_metrics_url}   consumer {PORTS.consumer_metrics_urls[0]}
  archive     Parquet files in {ROOT / 'data' / 'archive'}   (healthpipe archive ls)
  features    http://127.0.0.1:{PORTS.features}/features?query=availability&window=1m
Watch data arrive:  make status   (per-stage counts, lag, watermark age)
Logs:               make logs     ({STACK_DIR / 'logs'})
Stop everything:    make down""", flush=True)


def _apply_tiers() -> None:
    from healthpipe.common.config import load_config
    from healthpipe.tiers.apply import plan_and_apply

    os.environ.update(stack_env())
    steps = plan_and_apply(load_config(ROOT / "config" / "healthpipe.yaml"), dry_run=False)
    print("tiers: " + ", ".join(f"{s.kind} {s.name} {s.action}" for s in steps), flush=True)


def pipeline_down() -> None:
    from healthpipe.ops.stack import down

    for svc in reversed(PIPELINE):
        stop(svc)
    down()
