"""`healthpipe archive` / `python -m healthpipe archive`: run the archiver, or list what it wrote (`archive ls`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, TypeVar

from healthpipe.common.command import add_config_argument

if TYPE_CHECKING:
    from healthpipe.sinks.archive.expire import Expiry
    from healthpipe.sinks.archive.iceberg import IcebergTable

T = TypeVar("T")

HELP = ("the cold tier: write the raw topic to Parquet or an Iceberg table (local or S3), exactly once; `archive ls` "
        "lists it, `archive compact` rewrites the Iceberg table's days sorted and without duplicates, `archive "
        "expire` drops the Iceberg table's old snapshots and the files only they reached, `archive remove-orphans` "
        "deletes the table folder's files nothing reaches (a killed writer's)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("action", nargs="?", choices=["run", "ls", "compact", "expire", "remove-orphans"], default="run")
    p.add_argument("--until-idle", type=float, default=None, metavar="SECONDS",
                   help="run: exit after this many seconds without new messages (open files are sealed first)")
    p.add_argument("--from", dest="start", metavar="T", help="ls: partitions from this time")
    p.add_argument("--to", dest="end", metavar="T", help="ls: partitions up to this time")
    p.add_argument("--before", metavar="T", help="compact: only days that end at or before T (default: every day)")
    p.add_argument("--keep", type=int, metavar="N", help="expire: keep the newest N snapshots (default "
                   "archive.iceberg.keep_snapshots, which the archiver applies by itself every 10 minutes)")
    p.add_argument("--older-than", metavar="DURATION", default="3d",
                   help="remove-orphans: only files last modified this long ago (default 3d, at least 1h)")
    p.add_argument("--dry-run", action="store_true", help="remove-orphans: list them, delete nothing")
    p.add_argument("--json", action="store_true", help="ls, compact, expire, remove-orphans: JSON instead of a table")


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
    if args.action == "expire":
        return _expire(cfg, store, args.keep, args.json)
    if args.action == "remove-orphans":
        return _remove_orphans(cfg, store, args.older_than, args.dry_run, args.json)
    start, end = (parse_time(args.start) if args.start else None), (parse_time(args.end) if args.end else None)
    if cfg.archive.format == "iceberg":
        from healthpipe.sinks.archive.iceberg import IcebergTable

        entries = listing.iceberg_partitions(IcebergTable(cfg.archive, store), start, end)
    else:
        entries = listing.partitions(store, start, end)
    print(json.dumps(entries, indent=2) if args.json else listing.table(entries))
    return 0


def _on_table(cfg, store, action: str, hive_reason: str, work: Callable[[IcebergTable], T]) -> tuple[int, T | None]:
    """Run `work` on the Iceberg table: (exit code, its result). 2 for the hive layout, a bad argument (ValueError)
    or anything else only a new configuration fixes (Fatal); 1 while the store or the catalog cannot be reached."""
    from healthpipe.common.errors import Fatal, Retryable
    from healthpipe.sinks.archive.iceberg import IcebergTable

    if cfg.archive.format != "iceberg":
        print(f"archive {action}: needs archive.format: iceberg ({hive_reason})", file=sys.stderr)
        return 2, None
    try:
        return 0, work(IcebergTable(cfg.archive, store))
    except Retryable as exc:
        print(f"archive {action}: {exc}", file=sys.stderr)
        return 1, None
    except (Fatal, ValueError) as exc:
        print(f"archive {action}: {exc}", file=sys.stderr)
        return 2, None


def _compact(cfg, store, before_ms: int | None, as_json: bool) -> int:
    from healthpipe.sinks.archive.compact import compact, report

    code, results = _on_table(cfg, store, "compact", "the hive layout's files are already one per range and hour; "
                              "compacting them is not built",
                              lambda table: compact(table, before_ms, cfg.archive.iceberg.compact_file_rows))
    if results is not None:
        print(json.dumps([asdict(r) for r in results], indent=2) if as_json else report(results))
    return code


def _expire(cfg, store, keep: int | None, as_json: bool) -> int:
    from healthpipe.sinks.archive.expire import expire

    def work(table: IcebergTable) -> Expiry:
        if keep is not None and keep < 1:
            raise ValueError(f"--keep {keep}: at least 1 (the current snapshot always stays)")
        return expire(table, keep or cfg.archive.iceberg.keep_snapshots)

    code, done = _on_table(cfg, store, "expire", "the hive layout keeps no snapshots", work)
    if done is not None:
        print(json.dumps(asdict(done)) if as_json else f"expired {done.snapshots_expired} snapshots, kept "
              f"{done.snapshots_kept}, deleted {done.files_deleted} files")
    return code


def _remove_orphans(cfg, store, older_than: str, dry_run: bool, as_json: bool) -> int:
    from healthpipe.common.times import parse_duration_arg
    from healthpipe.sinks.archive.orphans import remove_orphans

    code, found = _on_table(cfg, store, "remove-orphans", "the hive layout's files are its listing",
                            lambda table: remove_orphans(table, parse_duration_arg(older_than, "--older-than"),
                                                         dry_run))
    if found is None:
        return code
    if as_json:
        print(json.dumps(asdict(found)))
    else:
        for rel in found.files:
            print(rel)
        print(f"{'would delete' if dry_run else 'deleted'} {len(found.files)} orphan files ({found.bytes} bytes) "
              f"last modified over {older_than} ago")
    return code
