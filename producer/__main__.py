import sys

from common.cli import main

sys.exit(main(["producer", *sys.argv[1:]]))
