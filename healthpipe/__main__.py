"""`python -m healthpipe ...` is the `healthpipe` command (for a checkout without the console script)."""

import logging
import os
import sys

from healthpipe.cli import main

code = main()
if code:
    # An error exit can leave Kafka clients open, and their librdkafka threads then meet a finalizing
    # interpreter: CI saw a consumer with a wrong password print its error and then die of SIGSEGV (exit -11,
    # not 2). The error is printed and the logs flushed; the process ends here, without the teardown.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
