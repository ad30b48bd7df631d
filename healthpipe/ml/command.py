"""`healthpipe export` and `healthpipe features serve` (also `python -m healthpipe export|features ...`)."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path

from healthpipe.common.command import add_config_argument

EXPORT_HELP = "a training data set from the tiers: Parquet/CSV, manifest, completeness table and picture"
FEATURES_HELP = "online features over HTTP: the training export's feature function, served at an instant"


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("--from", dest="start", required=True, metavar="T", help="ISO 8601 or unix seconds (exclusive)")
    p.add_argument("--to", dest="end", required=True, metavar="T", help="ISO 8601 or unix seconds (inclusive)")
    p.add_argument("--query", action="append", default=None, metavar="NAME", help="only this query (repeatable)")
    p.add_argument("--step", default=None, metavar="DURATION", help="a regular grid (last observation within 5m)")
    p.add_argument("--as-of", dest="as_of", default=None, metavar="T", help="only samples with timestamp <= T")
    p.add_argument("--snapshot", type=int, default=None, metavar="ID",
                   help="read the whole range from this snapshot of the Iceberg archive (archive.format: iceberg): "
                        "the manifest's iceberg_snapshot rebuilds a training set bit for bit")
    p.add_argument("--wide", action="store_true", help="one column per series on the time grid")
    p.add_argument("--rate-counters", action="store_true", help="counters as per-second rates (reset rule)")
    p.add_argument("--features", default=None, metavar="WINDOW",
                   help="the online features over WINDOW at every grid point, instead of values")
    p.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists and is not empty")


def run_export(args: argparse.Namespace) -> int:
    import sys

    from healthpipe.common import logs
    from healthpipe.common.config import load_config
    from healthpipe.common.times import parse_time
    from healthpipe.ml.data import _step_ms
    from healthpipe.ml.export import export

    cfg = load_config(args.config)
    logs.configure_from(cfg)
    manifest = export(cfg, cfg.select_queries(args.query), parse_time(args.start), parse_time(args.end),
                      Path(args.out), step_ms=_step_ms(args.step), as_of_ms=parse_time(args.as_of) if args.as_of
                      else None, wide=args.wide, rate_counters=args.rate_counters,
                      feature_window_ms=_step_ms(args.features), fmt=args.format, overwrite=args.overwrite,
                      progress=True, argv=["healthpipe", *sys.argv[1:]], step_text=args.step,
                      snapshot_id=args.snapshot)
    print(json.dumps({"out": args.out, "rows": manifest["rows"], "files": len(manifest["files"]),
                      "series": manifest["series"], "tiers": manifest["tiers"]}))
    return 0


def add_features_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("action", choices=["serve"])
    p.add_argument("--port", type=int, default=None, help="default: features.port (8010)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (127.0.0.1: this machine only; 0.0.0.0 to serve other machines)")


def run_features(args: argparse.Namespace) -> int:
    from healthpipe.common import logs
    from healthpipe.common.config import load_config
    from healthpipe.ml.serve import FeatureServer

    cfg = load_config(args.config)
    logs.configure_from(cfg)
    server = FeatureServer(cfg, args.port if args.port is not None else cfg.features.port, args.host).start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0
