"""The `healthpipe` command: one entry point, a subcommand per job. Imports are lazy per subcommand."""

from __future__ import annotations

import argparse
import logging
import sys

from common.errors import ConfigError, HealthpipeError

EXIT_CONFIG = 2


def _stack(args: argparse.Namespace) -> int:
    from common import stack

    names = args.services or None
    if args.action == "up":
        stack.up(names)
    elif args.action == "down":
        stack.down(names)
    elif args.action == "status":
        return 0 if stack.status() else 1
    return 0


def _up(args: argparse.Namespace) -> int:
    import shutil
    import subprocess

    from common import stack

    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        env_file = stack.ROOT / ".env"
        if not env_file.exists():
            import secrets

            env_file.write_text(f"INFLUXDB_TOKEN={secrets.token_urlsafe(32)}\n")
            env_file.chmod(0o600)
        return subprocess.run(["docker", "compose", "up", "-d", "--build"], cwd=stack.ROOT).returncode
    stack.pipeline_up()
    return 0


def _down(args: argparse.Namespace) -> int:
    import shutil
    import subprocess

    from common import stack

    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return subprocess.run(["docker", "compose", "down"], cwd=stack.ROOT).returncode
    stack.pipeline_down()
    return 0


def _status(args: argparse.Namespace) -> int:
    from common import stack
    from common.status import report

    healthy = stack.status()
    print()
    print(report(f"http://127.0.0.1:{stack.PRODUCER_METRICS_PORT}/metrics",
                 [f"http://127.0.0.1:{p}/metrics" for p in stack.CONSUMER_METRICS_PORTS]))
    return 0 if healthy else 1


def _demo_app(args: argparse.Namespace) -> int:
    from common.demo_app import serve

    logging.basicConfig(level="INFO")
    serve(args.host, args.port, args.seed)
    return 0


def _producer(args: argparse.Namespace) -> int:
    from producer.service import main

    return main(args.config, once=args.once)


def _consumer(args: argparse.Namespace) -> int:
    from consumer.service import main

    return main(args.config, until_idle=args.until_idle)


def _backfill(args: argparse.Namespace) -> int:
    from producer.backfill import main

    return main(args.config, args.start, args.end, args.query)


def _check(args: argparse.Namespace) -> int:
    from common.check import run

    return run(args.config, create_topics=args.create_topics)


def _replay(args: argparse.Namespace) -> int:
    from consumer import replay

    if args.group:
        return replay.move_offsets(args.config, args.group, args.topic, to_earliest=args.to_earliest,
                                   to_datetime=args.to_datetime, shift_by=args.shift_by, dry_run=args.dry_run)
    return replay.reload_range(args.config, args.start, args.end, args.bucket)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="healthpipe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stack", help="the native stack: real Kafka, Prometheus, InfluxDB and the demo app")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("services", nargs="*", help="only these services (default: all)")
    p.set_defaults(func=_stack)

    p = sub.add_parser("up", help="run everything: docker compose if a Docker engine runs, else the native stack "
                       "plus producer and consumer in the background")
    p.set_defaults(func=_up)
    p = sub.add_parser("down", help="stop what `up` started")
    p.set_defaults(func=_down)
    p = sub.add_parser("status", help="services, per-stage counts, lag, watermark age")
    p.set_defaults(func=_status)

    p = sub.add_parser("demo-app", help="serve the demo app's /metrics (simulated web traffic)")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(func=_demo_app)

    p = sub.add_parser("producer", help="process 1: poll Prometheus, publish to Kafka")
    p.add_argument("--config", help="YAML config (default: $HEALTHPIPE_CONFIG or config/healthpipe.yaml)")
    p.add_argument("--once", action="store_true", help="run one cycle and exit")
    p.set_defaults(func=_producer)

    p = sub.add_parser("consumer", help="process 2: consume from Kafka, clean, load into InfluxDB")
    p.add_argument("--config")
    p.add_argument("--until-idle", type=float, default=None, metavar="SECONDS",
                   help="exit after this many seconds without new messages (after a crash, make it longer than "
                        "consumer.session_timeout_ms: the dead member's partitions reach this one only then)")
    p.set_defaults(func=_consumer)

    p = sub.add_parser("backfill", help="publish a historical window without touching watermarks")
    p.add_argument("--config")
    p.add_argument("--start", required=True, help="ISO 8601 time or unix seconds")
    p.add_argument("--end", required=True, help="ISO 8601 time or unix seconds")
    p.add_argument("--query", default=None, help="only this query (default: all)")
    p.set_defaults(func=_backfill)

    p = sub.add_parser("check", help="the deploy check: dependencies, config, Prometheus, Kafka topics, InfluxDB")
    p.add_argument("--config")
    p.add_argument("--create-topics", action="store_true", help="create missing topics")
    p.set_defaults(func=_check)

    p = sub.add_parser("replay", help="after an outage: move a stopped group's offsets, or re-load a time range")
    p.add_argument("--config")
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
    p.set_defaults(func=_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"healthpipe: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except HealthpipeError as exc:
        print(f"healthpipe: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
