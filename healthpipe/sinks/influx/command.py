"""`healthpipe consumer` and `healthpipe replay`: the InfluxDB side of the pipeline."""

from __future__ import annotations

import argparse

from healthpipe.common.command import add_config_argument

HELP = "process 2: consume from Kafka, clean, load into InfluxDB"
REPLAY_HELP = "after an outage: move a stopped group's offsets, or re-load a time range"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("--until-idle", type=float, default=None, metavar="SECONDS",
                   help="exit after this many seconds without new messages (after a crash, make it longer than "
                        "consumer.session_timeout_ms: the dead member's partitions reach this one only then)")


def run(args: argparse.Namespace) -> int:
    from healthpipe.sinks.influx.service import main

    return main(args.config, until_idle=args.until_idle)


def add_replay_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("--topic", default=None, help="default: kafka.topic")
    p.add_argument("--group", help="move this (stopped) group's committed offsets")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--to-earliest", action="store_true")
    where.add_argument("--to-datetime", metavar="ISO")
    where.add_argument("--shift-by", metavar="DURATION", help="back by this long, e.g. 2h")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--from", dest="start", metavar="ISO", help="re-load samples from this time...")
    p.add_argument("--to", dest="end", metavar="ISO", help="...to this time, through a temporary group")
    p.add_argument("--bucket", default=None, help="into this bucket instead of load.influxdb.bucket")


def run_replay(args: argparse.Namespace) -> int:
    from healthpipe.sinks.influx import replay

    if args.group:
        return replay.move_offsets(args.config, args.group, args.topic, to_earliest=args.to_earliest,
                                   to_datetime=args.to_datetime, shift_by=args.shift_by, dry_run=args.dry_run)
    return replay.reload_range(args.config, args.start, args.end, args.bucket)
