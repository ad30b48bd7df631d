"""`healthpipe archive` / `python -m healthpipe archive`: run the archiver, or list what it wrote (`archive ls`)."""

from __future__ import annotations

import argparse
import json
import sys

from healthpipe.common.command import add_config_argument

HELP = ("the cold tier: write the raw topic to Parquet or an Iceberg table (local or S3), exactly once; `archive ls` "
        "lists it, `archive compact` rewrites the Iceberg table's days sorted and without duplicates")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("action", nargs="?", choices=["run", "ls", "compact"], default="run")
    p.add_argument("--until-idle", type=float, default=None, metavar="SECONDS",
                   help="run: exit after this many seconds without new messages (open files are sealed first)")
    p.add_argument("--from", dest="start", metavar="T", help="ls: partitions from this time")
    p.add_argument("--to", dest="end", metavar="T", help="ls: partitions up to this time")
    p.add_argument("--before", metavar="T", help="compact: only days that end at or before T (default: every day)")
    p.add_argument("--json", action="store_true", help="ls, compact: JSON instead of a table")


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
    store = Store(cfg.archive)
    if args.action == "compact":
        return _compact(cfg, store, parse_time(args.before) if args.before else None, args.json)
    start, end = (parse_time(args.start) if args.start else None), (parse_time(args.end) if args.end else None)
    if cfg.archive.format == "iceberg":
        from healthpipe.sinks.archive.iceberg import IcebergTable

        entries = listing.iceberg_partitions(IcebergTable(cfg.archive, store), start, end)
    else:
        entries = listing.partitions(store, start, end)
    print(json.dumps(entries, indent=2) if args.json else listing.table(entries))
    return 0


def _compact(cfg, store, before_ms: int | None, as_json: bool) -> int:
    from dataclasses import asdict

    from healthpipe.common.errors import Fatal, Retryable
    from healthpipe.sinks.archive.compact import compact, report
    from healthpipe.sinks.archive.iceberg import IcebergTable

    if cfg.archive.format != "iceberg":
        print("archive compact: needs archive.format: iceberg (the hive layout's files are already one per range "
              "and hour; compacting them is not built)", file=sys.stderr)
        return 2
    try:
        results = compact(IcebergTable(cfg.archive, store), before_ms, cfg.archive.iceberg.compact_file_rows)
    except Retryable as exc:
        print(f"archive compact: {exc}", file=sys.stderr)
        return 1
    except Fatal as exc:
        print(f"archive compact: {exc}", file=sys.stderr)
        return 2
    print(json.dumps([asdict(r) for r in results], indent=2) if as_json else report(results))
    return 0
