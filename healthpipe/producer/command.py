"""`healthpipe producer` / `python -m healthpipe producer`, and `healthpipe backfill`."""

from __future__ import annotations

import argparse

from healthpipe.common.command import add_config_argument

HELP = "process 1: poll Prometheus, publish to Kafka"
BACKFILL_HELP = "publish a historical window without touching watermarks"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("--once", action="store_true", help="run one cycle and exit")


def run(args: argparse.Namespace) -> int:
    from healthpipe.producer.service import main

    return main(args.config, once=args.once)


def add_backfill_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("--start", required=True, help="ISO 8601 time or unix seconds")
    p.add_argument("--end", required=True, help="ISO 8601 time or unix seconds")
    p.add_argument("--query", default=None, help="only this query (default: all)")


def run_backfill(args: argparse.Namespace) -> int:
    from healthpipe.producer.backfill import main

    return main(args.config, args.start, args.end, args.query)
