import sys

from common.command import main
from verify.command import HELP, add_arguments, run

sys.exit(main("python -m verify", HELP, add_arguments, run))
