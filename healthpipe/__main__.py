"""`python -m healthpipe ...` is the `healthpipe` command (for a checkout without the console script)."""

import sys

from healthpipe.cli import main

sys.exit(main())
