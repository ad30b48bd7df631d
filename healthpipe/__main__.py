import argparse
import sys

from common.command import execute
from healthpipe import command

parser = argparse.ArgumentParser(prog="python -m healthpipe", description="healthpipe's data for ML")
sub = parser.add_subparsers(dest="command", required=True)
export = sub.add_parser("export", help=command.EXPORT_HELP)
command.add_export_arguments(export)
export.set_defaults(run=command.run_export)
features = sub.add_parser("features", help=command.FEATURES_HELP)
command.add_features_arguments(features)
features.set_defaults(run=command.run_features)
args = parser.parse_args()
sys.exit(execute(args.run, args))
