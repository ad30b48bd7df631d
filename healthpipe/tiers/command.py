"""`healthpipe tiers apply [--dry-run]` / `healthpipe tiers status` / `python -m healthpipe tiers ...`."""

from __future__ import annotations

import argparse
import json

from healthpipe.common.command import add_config_argument

HELP = "storage tiers: apply the hot/warm buckets and downsampling tasks (idempotent), or show their status"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("action", choices=["apply", "status"])
    p.add_argument("--dry-run", action="store_true", help="apply: print the plan, change nothing")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from healthpipe.common import logs
    from healthpipe.common.config import load_config

    cfg = load_config(args.config)
    logs.configure_from(cfg)
    if args.action == "status":
        from healthpipe.tiers.inventory import report, table

        rows = report(cfg)
        print(json.dumps(rows, indent=2) if args.json else table(rows))
        return 0
    from healthpipe.tiers.apply import plan_and_apply

    steps = plan_and_apply(cfg, dry_run=args.dry_run)
    if args.json:
        print(json.dumps([s.__dict__ for s in steps], indent=2))
    else:
        print("\n".join(s.line() for s in steps))
        changed = sum(s.action != "unchanged" for s in steps)
        verb = "would change" if args.dry_run else "changed"
        print(f"{verb} {changed} of {len(steps)}" + (" (nothing to do)" if not changed else ""))
    return 0
