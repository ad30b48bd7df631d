"""The `healthpipe` command: one entry point, a subcommand per job.

The pipeline's own commands (producer, consumer, backfill, replay, ...) live with their packages
(`<package>/command.py`); this module only gathers them and adds the operations tooling (the native stack,
`up`/`down`/`status`, `check`, the demo app). Heavy imports happen inside each command's `run`, so
`healthpipe --help` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from healthpipe.common.command import add_config_argument, execute
from healthpipe.ml import command as ml_command
from healthpipe.producer import command as producer_command
from healthpipe.receive import command as receive_command
from healthpipe.sinks.archive import command as archive_command
from healthpipe.sinks.influx import command as consumer_command
from healthpipe.tiers import command as tiers_command
from healthpipe.verify import command as verify_command


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# --- operations tooling ---------------------------------------------------------------------------------

def _stack_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["up", "down", "status", "kill-broker", "start-broker"],
                   help="kill-broker N: kill -9 the broker with node id N; start-broker N: start it again")
    p.add_argument("services", nargs="*", help="only these services (default: all); a node id for *-broker")
    p.add_argument("--kafka-brokers", type=int, default=1, choices=[1, 3],
                   help="1 broker, or a 3-node KRaft cluster (RF=3, min.insync.replicas=2)")
    p.add_argument("--with", dest="extra", action="append", default=[], choices=["s3", "remote-write"],
                   help="also run an S3-compatible server (SeaweedFS) for the archive (s3); a Prometheus 3 on "
                        "port 9091 remote-writing to `healthpipe receive` on 8009 (remote-write)")
    p.add_argument("--secure", action="store_true",
                   help="Kafka over SASL_SSL with ACLs, InfluxDB over https, a principal and token per role "
                        "(docs/security.md); without it, up switches a secured stack back to plaintext")


def _stack(args: argparse.Namespace) -> int:
    from healthpipe.common.errors import ConfigError
    from healthpipe.ops import stack

    names = args.services or None
    if args.action == "up":
        stack.up(names, brokers=args.kafka_brokers, with_s3="s3" in args.extra, secure=args.secure,
                 with_remote_write="remote-write" in args.extra)
    elif args.action == "down":
        stack.down(names)
    elif args.action == "status":
        return 0 if stack.status() else 1
    else:
        if len(args.services) != 1 or not args.services[0].isdigit():
            raise ConfigError(f"stack {args.action} takes one node id, e.g. `healthpipe stack {args.action} 2`")
        broker = stack.broker_node(int(args.services[0]))
        if args.action == "kill-broker":
            stack.kill(broker)
        else:
            stack.start(broker)
    return 0


def _no_arguments(p: argparse.ArgumentParser) -> None:
    pass


def _up(args: argparse.Namespace) -> int:
    from healthpipe.ops import stack
    from healthpipe.ops.stack import started

    if stack.docker_engine_runs():
        started.record(started.Started("compose"))
        return stack.compose_up()
    stack.pipeline_up()
    started.record(started.Started("native", pids={s.name: pid for s in stack.PIPELINE if (pid := s.pid())}))
    return 0


def _down(args: argparse.Namespace) -> int:
    """Stop what `up` started, as it recorded it: not whatever the machine runs now."""
    from healthpipe.ops import stack
    from healthpipe.ops.stack import started

    what = started.recorded()
    if what is not None and what.mode == "compose":
        code = stack.compose_down()
        if code == 0:
            started.forget()
        return code
    # native, or nothing recorded (a checkout older than the record): the native pipeline's pid files say what runs
    stack.pipeline_down()
    started.forget()
    return 0


def _json_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON document on stdout (docs/cli.md has its shape)")


def _status(args: argparse.Namespace) -> int:
    import json

    from healthpipe.ops import stack
    from healthpipe.ops.status import figures, report

    if args.json:
        rows = stack.service_states()
        doc = {"healthy": all(r["state"] == "healthy" for r in rows), "services": rows,
               "kafka_brokers": stack.kafka_brokers(),
               **figures(stack.PORTS.producer_metrics_url, stack.PORTS.consumer_metrics_urls)}
        print(json.dumps(doc, indent=2))
        return 0 if doc["healthy"] else 1
    healthy = stack.status()
    print()
    print(report(stack.PORTS.producer_metrics_url, stack.PORTS.consumer_metrics_urls))
    return 0 if healthy else 1


def _influxdb_setup(args: argparse.Namespace) -> int:
    from healthpipe.common.config import load_config
    from healthpipe.ops.influxdb_setup import password_from_environment, setup_influxdb

    influx = load_config(args.config).load.influxdb
    done = setup_influxdb(influx, password=password_from_environment())
    print(f"influxdb-setup: {'set up' if done else 'already set up, left as it is'}: org {influx.org}, "
          f"bucket {influx.bucket} at {influx.url}")
    return 0


def _demo_app_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--seed", type=int, default=None)


def _demo_app(args: argparse.Namespace) -> int:
    from healthpipe.ops.demo_app import serve

    logging.basicConfig(level="INFO")
    serve(args.host, args.port, args.seed)
    return 0


def _probe(args: argparse.Namespace) -> int:
    """Exit 0 if the process beside this one answers /healthz on the port it recorded, else 1."""
    import os
    import urllib.request

    from healthpipe.common.observability import PROBE_FILE_ENV

    probe_file = os.environ.get(PROBE_FILE_ENV)
    if not probe_file or not os.path.exists(probe_file):
        print(f"probe: no status port recorded (${PROBE_FILE_ENV}={probe_file or ''}): the process has not "
              "started its status server", file=sys.stderr)
        return 1
    with open(probe_file) as f:
        port = int(f.read().strip())
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as answer:
            return 0 if answer.status == 200 else 1
    except OSError as e:
        print(f"probe: http://127.0.0.1:{port}/healthz: {e}", file=sys.stderr)
        return 1


def _check_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("--create-topics", action="store_true", help="create missing topics")
    p.add_argument("--role", choices=["producer", "consumer", "archive", "reader", "tiers"],
                   help="check the configured Kafka principal and InfluxDB token against what this role needs "
                        "(docs/security.md), naming each missing right")
    _json_argument(p)


def _check(args: argparse.Namespace) -> int:
    from healthpipe.ops.check import run

    return run(args.config, create_topics=args.create_topics, as_json=args.json, role=args.role)


def _secure_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("step", choices=["init", "grant"],
                   help="init: certificates and passwords, handed out to one folder per consumer (before Kafka and "
                        "InfluxDB start); grant: each role's SCRAM credential, ACLs and InfluxDB token (once they run)")
    p.add_argument("dir", type=Path, help="the folder holding source/ and one folder per consumer (volumes)")
    p.add_argument("--host", action="append", default=[],
                   help="init: a name or address the server certificate is valid for (repeat)")
    p.add_argument("--owner", action="append", default=[], metavar="FOLDER=UID",
                   help="init, as root: the uid that reads FOLDER (`*` for the rest)")


def _secure(args: argparse.Namespace) -> int:
    from healthpipe.common.config import load_config
    from healthpipe.common.errors import ConfigError
    from healthpipe.ops import secure

    if args.step == "init":
        try:
            owners = {name: int(uid) for name, uid in (o.split("=", 1) for o in args.owner)}
        except ValueError:
            raise ConfigError(f"--owner takes FOLDER=UID, got {args.owner}") from None
        folders = secure.init(args.dir, tuple(args.host or ["localhost", "127.0.0.1"]), owners)
        print(f"secure init: credentials handed out to {', '.join(f.name for f in folders)}")
    else:
        roles = secure.grant(args.dir, load_config(args.config))
        print(f"secure grant: SCRAM credentials and ACLs for every role; InfluxDB tokens for {', '.join(roles)}")
    return 0


COMMANDS: list[Command] = [
    Command("stack", "the native stack: real Kafka, Prometheus, InfluxDB and the demo app", _stack_arguments,
            _stack),
    Command("up", "run everything: docker compose if a Docker engine runs, else the native stack plus producer "
            "and consumer in the background", _no_arguments, _up),
    Command("down", "stop what `up` started", _no_arguments, _down),
    Command("status", "services, per-stage counts, lag, watermark age", _json_argument, _status),
    Command("probe", "health check for a container: does the process beside this one answer /healthz?",
            _no_arguments, _probe),
    Command("influxdb-setup", "first start of an empty InfluxDB: user, org, bucket and the configured token as its "
            "operator token (does nothing once set up; password from INFLUXDB_PASSWORD[_FILE])",
            add_config_argument, _influxdb_setup),
    Command("demo-app", "serve the demo app's /metrics (simulated web traffic)", _demo_app_arguments, _demo_app),
    Command("producer", producer_command.HELP, producer_command.add_arguments, producer_command.run),
    Command("receive", receive_command.HELP, receive_command.add_arguments, receive_command.run),
    Command("consumer", consumer_command.HELP, consumer_command.add_arguments, consumer_command.run),
    Command("backfill", producer_command.BACKFILL_HELP, producer_command.add_backfill_arguments,
            producer_command.run_backfill),
    Command("check", "the deploy check: dependencies, config, Prometheus, Kafka topics, InfluxDB",
            _check_arguments, _check),
    Command("secure", "docker-compose's secure profile: make and hand out credentials (init), then grant each role "
            "its rights on Kafka and InfluxDB (grant)", _secure_arguments, _secure),
    Command("replay", consumer_command.REPLAY_HELP, consumer_command.add_replay_arguments,
            consumer_command.run_replay),
    Command("verify", verify_command.HELP, verify_command.add_arguments, verify_command.run),
    Command("archive", archive_command.HELP, archive_command.add_arguments, archive_command.run),
    Command("tiers", tiers_command.HELP, tiers_command.add_arguments, tiers_command.run),
    Command("export", ml_command.EXPORT_HELP, ml_command.add_export_arguments, ml_command.run_export),
    Command("features", ml_command.FEATURES_HELP, ml_command.add_features_arguments, ml_command.run_features),
]


def build_parser() -> argparse.ArgumentParser:
    from healthpipe import __version__

    parser = argparse.ArgumentParser(prog="healthpipe", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"healthpipe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return execute(args.run, args)


def run() -> NoReturn:
    """The process's entry (the console script, `python -m healthpipe`, the image): `main`, then the exit.

    An error exit can leave Kafka clients open, and their librdkafka threads then meet a finalizing interpreter: CI
    saw a consumer with a wrong password print its error and then die of SIGSEGV (exit -11, not 2). So an error
    exit prints and flushes, then ends the process with os._exit, without the interpreter's teardown."""
    code = main()
    if code:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(0)


if __name__ == "__main__":
    run()
