import sys

from common.command import main
from tiers.command import HELP, add_arguments, run

sys.exit(main("python -m tiers", HELP, add_arguments, run))
