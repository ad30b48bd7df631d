"""Logging: one key=value line per event, with every configured secret scrubbed.

Call sites write messages as `event key=value ...` (e.g. `log.info("batch_flushed samples=%d ms=%.1f", ...)`),
so a line is greppable without a JSON parser and costs nothing to build when the level is off.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

_FORMAT = "ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s"


class SecretScrubber(logging.Filter):
    """Replaces every known secret in a record's final text with `***`."""

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        for secret in self.secrets:
            text = text.replace(secret, "***")
        record.msg, record.args = text, None
        return True


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the moment (a test harness may swap it), not the one at start."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure(level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """Route all logging to stderr as key=value lines; scrub `secrets` from every line."""
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S%z"))
    handler.addFilter(SecretScrubber(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # librdkafka and urllib3 chatter is not ours to print at INFO.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.getLogger("influxdb_client").setLevel(logging.WARNING)
