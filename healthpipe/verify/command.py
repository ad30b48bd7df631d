"""`healthpipe verify` / `python -m healthpipe verify`: is everything Prometheus has for a range in InfluxDB?

    healthpipe verify --from T --to T [--query NAME ...] [--json] [--repair] [--bucket B] [--full]
    healthpipe verify --every 5m --delay 2m            (continuous: /metrics, for alerting)

Exit codes: 0 exact; 1 any difference (missing, extra, mismatched, dead-lettered); 2 invalid config or
arguments; 3 a source could not be read (Prometheus, InfluxDB, Kafka): never "exact" for what was not read.
"""

from __future__ import annotations

import argparse
import json
import time

from healthpipe.common.command import add_config_argument
from healthpipe.common.errors import EXIT_DIFFERENCE, EXIT_OK, ConfigError

HELP = "compare InfluxDB with Prometheus for a range: every missing, extra or changed sample; --repair"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("--from", dest="start", metavar="T", help="ISO 8601 or unix seconds (exclusive)")
    p.add_argument("--to", dest="end", metavar="T", help="ISO 8601 or unix seconds (inclusive)")
    p.add_argument("--query", action="append", default=None, metavar="NAME", help="only this query (repeatable)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout instead of the table")
    p.add_argument("--repair", action="store_true",
                   help="re-publish missing ranges from Prometheus, wait for the consumer group, verify again")
    p.add_argument("--bucket", default=None, help="verify this bucket instead of load.influxdb.bucket")
    p.add_argument("--full", action="store_true", help="compare every sample (no count/sum screening)")
    p.add_argument("--every", metavar="DURATION", default=None,
                   help="continuous mode: verify the last closed interval this often (verify.every)")
    p.add_argument("--delay", metavar="DURATION", default=None,
                   help="continuous mode: intervals end this long before now (verify.delay)")


def run(args: argparse.Namespace) -> int:
    from healthpipe.common import logs
    from healthpipe.common.config import load_config
    from healthpipe.common.times import parse_duration_arg, parse_time
    from healthpipe.verify import report as output
    from healthpipe.verify import verification

    cfg = load_config(args.config)
    logs.configure_from(cfg)
    queries = cfg.select_queries(args.query)
    if args.every or (args.start is None and args.end is None and args.delay):
        from healthpipe.verify.service import run_continuous

        every = parse_duration_arg(args.every, "--every") if args.every else cfg.verify.every.seconds
        delay = parse_duration_arg(args.delay, "--delay") if args.delay else cfg.verify.delay.seconds
        return run_continuous(cfg, queries, every, delay, args.bucket, args.full)
    if not (args.start and args.end):
        raise ConfigError("verify needs --from T --to T (or --every DURATION for continuous mode)")
    start_ms, end_ms = parse_time(args.start), parse_time(args.end)
    if end_ms <= start_ms:
        raise ConfigError(f"--to ({args.end}) must be after --from ({args.start})")
    if end_ms > time.time() * 1000:
        raise ConfigError(f"--to ({args.end}) is in the future: nothing can be verified there yet")
    report = verification.run(cfg, queries, start_ms, end_ms, args.bucket, args.full, progress=not args.json)
    if args.repair and not report.exact:
        from healthpipe.verify.repair import repair

        before = report
        actions = repair(cfg, queries, before.queries, progress=not args.json)
        report = verification.run(cfg, queries, start_ms, end_ms, args.bucket, args.full, progress=not args.json)
        if args.json:
            print(json.dumps({"before": before.as_json(), "repair": actions, "after": report.as_json()}))
        else:
            print("BEFORE repair")
            print(output.table(before))
            print("\nREPAIR")
            print("\n".join(f"  {a}" for a in actions) or "  nothing to re-publish (nothing missing)")
            print("\nAFTER repair")
            print(output.table(report))
    elif args.json:
        print(json.dumps(report.as_json()))
    else:
        print(output.table(report))
    return EXIT_OK if report.exact else EXIT_DIFFERENCE
