"""Logging: one line per event, logfmt (quoted where needed) or JSON (`log.format`), every configured secret scrubbed.

Call sites write messages as `event key=%s ...` (e.g. `log.info("batch_flushed samples=%d ms=%.1f", ...)`), so
nothing is formatted when the level is off. The formatter reads that template back into fields: each `key=%x`
takes its own argument, so a value with spaces or quotes stays one quoted value, never a broken line:

    ts=2026-12-05T07:30:00+0000 level=WARNING logger=healthpipe.consumer.hold msg=flush_failed attempt=2 error="HTTP 503: busy"
    {"ts": "2026-12-05T07:30:00+0000", "level": "WARNING", ..., "msg": "flush_failed", "attempt": 2, "error": "HTTP 503: busy"}

A message that is not in that shape (another library's) becomes one quoted `msg`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from typing import Any, Literal

Format = Literal["logfmt", "json"]

# `key=%s`, `key=%d`, `key=%r`, `key=%.1fs` (a unit may follow): one printf conversion as a field's whole value
_FIELD = re.compile(r"(?<![^\s(])([A-Za-z_][\w.]*)=(%[-#0 +]*\d*(?:\.\d+)?[sdifrxg])([A-Za-z%]*)(?=[\s),]|$)")
_CONVERSION = re.compile(r"%[-#0 +]*\d*(?:\.\d+)?[sdifrxg%]")
_BARE = re.compile(r"[^\s=\"\\]+")


def event_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record as ordered fields: msg (the event), then one per `key=%x` of the template, then `detail` for
    any other text. Falls back to the whole formatted message as msg when the template is not in that shape."""
    template, args = record.msg, record.args
    if not isinstance(template, str) or not isinstance(args, tuple) or not args:
        return {"msg": record.getMessage()}
    fields = list(_FIELD.finditer(template))
    if len(fields) != len(_CONVERSION.findall(template)) or len(fields) != len(args):
        return {"msg": record.getMessage()}
    out: dict[str, Any] = {}
    rest = []
    position = 0
    for match, arg in zip(fields, args, strict=True):
        rest.append(template[position:match.start()])
        position = match.end()
        out[match.group(1)] = _value(match.group(2), match.group(3), arg)
    rest.append(template[position:])
    words = " ".join("".join(rest).split())
    event, _, detail = words.partition(" ")
    result: dict[str, Any] = {"msg": event or record.getMessage()}
    result.update(out)
    if detail:
        result["detail"] = detail
    return result


def _value(conversion: str, unit: str, arg: Any) -> Any:
    """A number stays a number (JSON keeps its type), formatted as the template asks; anything else is text."""
    text = conversion % (arg,)
    if unit or isinstance(arg, bool) or not isinstance(arg, int | float):
        return text + unit
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
