"""Logging: one line per event, logfmt (quoted where needed) or JSON (`log.format`), every configured secret scrubbed.

Call sites write messages as `event key=%s ...` (e.g. `log.info("batch_flushed samples=%d ms=%.1f", ...)`), so
nothing is formatted when the level is off. The formatter reads that template back into fields: each `key=%x`
takes its own arguments, so a value with spaces or quotes stays one quoted value, never a broken line:

    ts=2026-12-05T07:30:00+0000 level=WARNING logger=healthpipe.consumer.hold msg=flush_failed error="HTTP 503: busy"
    {"ts": "2026-12-05T07:30:00+0000", "level": "WARNING", ..., "msg": "flush_failed", "error": "HTTP 503: busy"}

A message that is not in that shape (another library's) becomes one quoted `msg`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from healthpipe.common.config import HealthpipeConfig

Format = Literal["logfmt", "json"]

_CONVERSION = re.compile(r"%[-#0 +]*\d*(?:\.\d+)?[sdifrxg]")
_KEY = re.compile(r"([A-Za-z_][\w.]*)=(\S*)")
_BARE = re.compile(r"[^\s=\"\\]+")
_OWN = {"ts", "level", "logger", "msg", "exception"}  # the line's own keys: a template's field may not take them


def event_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record as ordered fields: msg (the event: the template's first word), then one field per `key=...` word
    of the template that holds printf conversions (`partition=%s/%d` takes two arguments), then `detail` for the
    other words. Falls back to the whole formatted message as msg when a conversion stands outside a `key=`."""
    template, args = record.msg, record.args
    if not isinstance(template, str) or not isinstance(args, tuple) or not args or "%%" in template:
        return {"msg": record.getMessage()}
    remaining = list(args)
    event, *words = template.split()
    fields: dict[str, Any] = {}
    detail = []
    for word in words:
        conversions = _CONVERSION.findall(word)
        key = _KEY.fullmatch(word)
        if not conversions:
            detail.append(word)
            continue
        if key is None or len(conversions) > len(remaining) or key.group(1) in fields or key.group(1) in _OWN:
            return {"msg": record.getMessage()}
        value = key.group(2).rstrip(":;,")  # `resume_at=%d:` — the colon is prose, not the value
        taken, remaining = remaining[:len(conversions)], remaining[len(conversions):]
        typed = _typed(value, taken[0]) if value in conversions else None
        fields[key.group(1)] = value % tuple(taken) if typed is None else typed
    if remaining or _CONVERSION.search(event) or (detail and "detail" in fields):
        return {"msg": record.getMessage()}
    return {"msg": event, **fields, **({"detail": " ".join(detail)} if detail else {})}


def _typed(conversion: str, arg: Any) -> int | float | None:
    """A number as the template formats it, kept a number (JSON keeps its type); None for anything else."""
    if isinstance(arg, bool) or not isinstance(arg, int | float):
        return None
    text = conversion % (arg,)
    if conversion[-1] in "fg":
        return float(text) if "." in text else int(text)
    return int(arg) if conversion[-1] in "di" else arg


def logfmt_value(value: Any) -> str:
    """A logfmt value: bare when it can be, else double-quoted with `"`, `\\` and control characters escaped."""
    text = value if isinstance(value, str) else str(value)
    if text and _BARE.fullmatch(text):
        return text
    return json.dumps(text, ensure_ascii=False)


class EventFormatter(logging.Formatter):
    """ts, level, logger, then the event's fields; logfmt or JSON. Secrets are scrubbed from every value."""

    def __init__(self, fmt: Format = "logfmt", secrets: Iterable[str] = ()):
        super().__init__(datefmt="%Y-%m-%dT%H:%M:%S%z")
        self.fmt = fmt
        self.secrets = [s for s in secrets if s]

    def _scrub(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        for secret in self.secrets:
            value = value.replace(secret, "***")
        return value

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {"ts": self.formatTime(record, self.datefmt), "level": record.levelname,
                                  "logger": record.name, **event_fields(record)}
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        fields = {key: self._scrub(value) for key, value in fields.items()}
        if self.fmt == "json":
            return json.dumps(fields, ensure_ascii=False, default=str)
        return " ".join(f"{key}={logfmt_value(value)}" for key, value in fields.items())


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the moment (a test harness may swap it), not the one at start."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure(level: str = "INFO", secrets: Iterable[str] = (), fmt: Format = "logfmt") -> None:
    """Route all logging to stderr, one logfmt or JSON line per event; scrub `secrets` from every line."""
    handler = _StderrHandler()
    handler.setFormatter(EventFormatter(fmt, secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # librdkafka and urllib3 chatter is not ours to print at INFO.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.getLogger("influxdb_client").setLevel(logging.WARNING)


def configure_from(cfg: HealthpipeConfig) -> None:
    """`configure` as the config says: its level and format, its secrets scrubbed."""
    configure(cfg.pipeline.log_level, cfg.secrets(), cfg.log.format)
