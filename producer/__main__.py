import sys

from common.command import main
from producer.command import HELP, add_arguments, run

sys.exit(main("python -m producer", HELP, add_arguments, run))
