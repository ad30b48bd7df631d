import sys

from common.command import main
from consumer.command import HELP, add_arguments, run

sys.exit(main("python -m consumer", HELP, add_arguments, run))
