import sys

from archive.command import HELP, add_arguments, run
from common.command import main

sys.exit(main("python -m archive", HELP, add_arguments, run))
