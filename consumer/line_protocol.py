"""InfluxDB line protocol that a label value cannot break out of.

What InfluxDB 2.x's parser does with tag keys and values (checked against a real influxd 2.7):
- `,`, `=` and space are escaped with a backslash and come back exactly;
- every other backslash is kept literally, except that a backslash right before `,`, `=`, space or at
  the end of a value cannot be written at all (the parser reads it as an escape);
- a newline ends the line: there is no way to escape it.

So healthpipe's rule for what InfluxDB cannot represent, applied to tag keys and values:
- a newline becomes U+2424 (␤) and a carriage return U+240D (␍), so no value can start a new point;
- a backslash before `,` `=` space, or at the end, becomes U+29F5 (⧵);
- a tag with an empty value is left out (InfluxDB rejects `key=`; Prometheus treats it as absent).
Everything else, unicode and quotes included, round-trips exactly (tests/integration/test_line_protocol_roundtrip.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

MEASUREMENT = "health_metrics"
FIELD = "value"

_CONTROL = str.maketrans({"\n": "\u2424", "\r": "\u240d"})
_BACKSLASH_BEFORE_SPECIAL = re.compile(r"\\(?=[,= ]|$)")
_ESCAPE_TAG = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_ESCAPE_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ "})


def representable(text: str) -> str:
    """`text` as InfluxDB will store it under the rule above (what a round trip gives back)."""
    if "\\" not in text and "\n" not in text and "\r" not in text:
        return text  # the usual label: three scans in C instead of a translate and a regex substitution
    return _BACKSLASH_BEFORE_SPECIAL.sub("\u29f5", text.translate(_CONTROL))


def escape_tag(text: str) -> str:
    """A tag key or value, escaped for line protocol."""
    text = representable(text)
    if "," not in text and "=" not in text and " " not in text:
        return text
    return text.translate(_ESCAPE_TAG)


def escape_measurement(text: str) -> str:
    return representable(text).translate(_ESCAPE_MEASUREMENT)


def tag_set(tags: Iterable[tuple[str, str]]) -> str:
    """`k1=v1,k2=v2` sorted by key (InfluxDB's preferred order), leaving out empty values."""
    parts = []
    for key, value in sorted(tags):
        k, v = escape_tag(key), escape_tag(value)
        if k and v:
            parts.append(f"{k}={v}")
    return ",".join(parts)


def series_prefix(tags: Iterable[tuple[str, str]], measurement: str = MEASUREMENT) -> str:
    """Everything before the field set: computed once per series and reused for each of its samples."""
    ts = tag_set(tags)
    return f"{escape_measurement(measurement)},{ts}" if ts else escape_measurement(measurement)


def format_value(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"InfluxDB cannot store {value}")
    return repr(float(value))


def line(prefix: str, value: float, timestamp_ms: int) -> str:
    """One point, millisecond precision."""
    return f"{prefix} {FIELD}={format_value(value)} {timestamp_ms}"


def lines(prefixes: list[str], values: list[float], timestamps_ms: list[int]) -> list[str]:
    """Many points at once (the transformer's hot path): values must already be finite floats.

    `repr(float)` is the shortest text that reads back as the same float, so a value round-trips exactly."""
    field = f" {FIELD}="
    return [f"{p}{field}{v!r} {t}" for p, v, t in zip(prefixes, values, timestamps_ms, strict=True)]
