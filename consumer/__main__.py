import sys

from common.cli import main

sys.exit(main(["consumer", *sys.argv[1:]]))
