"""`healthpipe archive` / `python -m healthpipe archive`: run the archiver, or list what it wrote (`archive ls`)."""

from __future__ import annotations

import argparse
import json

from healthpipe.common.command import add_config_argument

HELP = "the cold tier: write the raw topic to Parquet (local or S3), exactly once; `archive ls` lists it"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("action", nargs="?", choices=["run", "ls"], default="run")
    p.add_argument("--until-idle", type=float, default=None, metavar="SECONDS",
                   help="run: exit after this many seconds without new messages (open files are sealed first)")
    p.add_argument("--from", dest="start", metavar="T", help="ls: partitions from this time")
    p.add_argument("--to", dest="end", metavar="T", help="ls: partitions up to this time")
    p.add_argument("--json", action="store_true", help="ls: JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    if args.action == "run":
        from healthpipe.sinks.archive.service import main

        return main(args.config, until_idle=args.until_idle)
    from healthpipe.common import logs
    from healthpipe.common.config import load_config
    from healthpipe.common.times import parse_time
    from healthpipe.sinks.archive import listing
    from healthpipe.sinks.archive.store import Store

    cfg = load_config(args.config)
    logs.configure_from(cfg)
    entries = listing.partitions(Store(cfg.archive), parse_time(args.start) if args.start else None,
                                 parse_time(args.end) if args.end else None)
    print(json.dumps(entries, indent=2) if args.json else listing.table(entries))
    return 0
