"""`python -m healthpipe ...` is the `healthpipe` command (for a checkout without the console script)."""

from healthpipe.cli import run

run()
