"""`healthpipe receive`."""

from __future__ import annotations

import argparse

from healthpipe.common.command import add_config_argument

HELP = "take Prometheus remote write (1.0 and 2.0) on POST /api/v1/write and publish it to Kafka"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)


def run(args: argparse.Namespace) -> int:
    from healthpipe.receive.service import main

    return main(args.config)
