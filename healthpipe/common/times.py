"""Durations and instants as config files and command lines spell them.

- durations: Prometheus style, "15s", "5m", "6h", "7d", "1h30m"; a bare number is seconds.
- instants: ISO 8601 ("2026-11-25T10:00:00Z") or unix seconds; healthpipe works in epoch milliseconds.

`Duration` is the config type: parsed once when the config is read, so no use site parses text again.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from healthpipe.common.errors import ConfigError

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


def parse_duration(text: str | int | float) -> float:
    """Seconds in `text`; a bare number is already seconds. Raises ValueError naming the bad input."""
    if isinstance(text, int | float):
        if not math.isfinite(text) or text < 0:
            raise ValueError(f"duration must be a finite number of seconds, not negative, got {text}")
        return float(text)
    s = text.strip()
    try:
        return parse_duration(float(s))
    except ValueError:
        pass
    pos, total = 0, 0.0
    for match in _PART.finditer(s):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(s) or not s:
        raise ValueError(f"not a duration: {text!r} (expected e.g. 15s, 5m, 6h, 7d)")
    return total


@dataclass(frozen=True, slots=True)
class Span:
    """A parsed duration that remembers how it was written (for docs, logs and a config round trip)."""

    text: str
    seconds: float

    @property
    def ms(self) -> int:
        return int(round(self.seconds * 1000))

    @classmethod
    def parse(cls, value: Any) -> Span:
        if isinstance(value, Span):
            return value
        if isinstance(value, int | float):
            return cls(f"{value:g}s", parse_duration(value))
        if isinstance(value, str):
            return cls(value.strip(), parse_duration(value))
        raise ValueError(f"not a duration: {value!r} (expected e.g. 15s, 5m, 6h, 7d)")

    def __str__(self) -> str:
        return self.text


# The config field type: accepts "15s" / 15, validates once, serialises back to its text.
Duration = Annotated[Span, BeforeValidator(Span.parse), PlainSerializer(lambda d: d.text, return_type=str)]


# Instants healthpipe accepts: what a datetime, Flux and an int64 of nanoseconds can all hold (1677..2262 for the
# last; no sample of ours predates 1970).
EARLIEST_MS, LATEST_MS = 0, 9_223_372_036_854  # 1970-01-01 .. 2262-04-11


def parse_time(text: str) -> int:
    """ISO 8601 (a trailing Z is fine; no zone means UTC) or unix seconds, to epoch milliseconds. Anything else,
    and any instant outside 1970..2262 (`inf`, `1e300`), is a ConfigError naming the input."""
    truncate = True  # unix seconds are truncated to the millisecond, ISO text rounded (as before)
    try:
        seconds = float(text)
    except ValueError:
        truncate = False
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"not a time: {text!r} (expected ISO 8601 like 2026-11-25T10:00:00Z or unix seconds)") \
                from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        seconds = parsed.timestamp()
    if not math.isfinite(seconds) or not EARLIEST_MS <= seconds * 1000 <= LATEST_MS:
        raise ConfigError(f"time out of range: {text!r} (between 1970 and 2262)")
    return int(seconds * 1000) if truncate else round(seconds * 1000)


def parse_duration_arg(text: str, what: str) -> float:
    """A duration from the command line; a bad one is a ConfigError naming the argument."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def iso(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC with a Z, millisecond precision."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
