"""What every healthpipe command shares: the --config argument, and errors turned into exit codes.

Each runnable package (producer, consumer, ...) has a `command` module with `add_arguments(parser)` and
`run(args) -> int`; `healthpipe <name>` (healthpipe/cli.py) goes through `execute`.

Exit codes (scripts branch on them): 0 done; 1 failed, or a difference found (verify); 2 invalid config or
arguments; 3 a service needed could not be reached (Prometheus, Kafka, InfluxDB, the archive store).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from healthpipe.common.errors import HealthpipeError, exit_code


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config (default: $HEALTHPIPE_CONFIG or config/healthpipe.yaml)")


def execute(run: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a command; a HealthpipeError becomes one line on stderr and its exit code."""
    try:
        return int(run(args) or 0)
    except HealthpipeError as exc:
        print(f"healthpipe: {exc}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        return 130
