"""The stored schema: what a sample becomes in InfluxDB (and what every reader of it expects).

One point per sample: measurement `health_metrics`, field `value` (a float), the sample's own timestamp (ms), and
a tag set built from the series' labels by `tags_of`:
- `metric` (`__name__`, or the query name for a computed series), `metric_type`, `service` (the `service`
  label, else `job`), `instance`, then every other label;
- a label whose name is one of ours or one Flux/InfluxQL reserves is stored as `label_<name>` (one-to-one);
- `stored_tags` is that tag set as InfluxDB gives it back (after the line-protocol rule below, empties left out).
The same sample always becomes the same point, so a re-delivery overwrites instead of adding.

Line protocol that a label value cannot break out of. What InfluxDB 2.x's parser does with tag keys and values
(checked against a real influxd 2.7):
- `,`, `=` and space are escaped with a backslash and come back exactly;
- every other backslash is kept literally, except that a backslash right before `,`, `=`, space or at
  the end of a value cannot be written at all (the parser reads it as an escape);
- a newline ends the line: there is no way to escape it.

So healthpipe's rule for what InfluxDB cannot represent, applied to tag keys and values:
- a newline becomes U+2424 (␤) and a carriage return U+240D (␍), so no value can start a new point;
- a backslash before `,` `=` space, or at the end, becomes U+29F5 (⧵);
- a tag with an empty value is left out (InfluxDB rejects `key=`; Prometheus treats it as absent).
Everything else, unicode and quotes included, round-trips exactly (tests/integration/test_line_protocol_roundtrip.py).

`fastline` is the compiled hot path (healthpipe/schema/_fastline.c, built by `make install` where a C compiler
is): the same rules in C, over a window's samples still as JSON text. None where it was not built; the sinks
then use the pure-Python engines (same output, more CPU). This module imports nothing else of healthpipe's.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Collection, Iterable, Mapping

try:
    from healthpipe.schema import _fastline as fastline
except ImportError:  # pragma: no cover - the pure-Python engines do the same, with more CPU
    fastline = None  # type: ignore[assignment]

# Message decoding (common.messages.decode) takes this: well-formed samples stay JSON text, which the fast path
# turns into lines or arrays without a Python object per sample
scan_samples = fastline.scan_samples if fastline is not None else None

MEASUREMENT = "health_metrics"
FIELD = "value"

# Our own tag names, and names Flux or InfluxQL reserve: a label with one of these names is stored
# as `label_<name>` so it cannot overwrite ours or confuse queries. A label that already starts with
# `label_` is renamed too, so no two labels can land on one tag (`metric` → `label_metric`,
# `label_metric` → `label_label_metric`): the renaming is one-to-one.
OWN_TAGS = {"service", "instance", "metric_type", "metric"}
RESERVED = {"time", "result", "table", "value", "label"}
RENAMED_PREFIX = "label_"


def tag_key(label: str) -> str:
    """The tag key a Prometheus label name is stored under."""
    if label in OWN_TAGS or label in RESERVED or label.startswith("_") or label.startswith(RENAMED_PREFIX):
        return RENAMED_PREFIX + label
    return label


def metric_of(query: str, labels: Mapping[str, str]) -> str:
    """The `metric` tag: the series' `__name__`, or the query's name for a computed series."""
    return labels.get("__name__") or query


def tags_of(query: str, metric_type: str, labels: Mapping[str, str], include: Collection[str] | None = None,
            exclude: Collection[str] = ()) -> dict[str, str]:
    """The tag set of a series: metric, metric_type, service, instance, then the other labels (only those in
    `include` when it is given, none in `exclude`). Values are as Prometheus gave them: see `stored_tags`."""
    tags = {"metric": metric_of(query, labels), "metric_type": metric_type}
    service = labels.get("service") or labels.get("job")
    if service:
        tags["service"] = service
    if labels.get("instance"):
        tags["instance"] = labels["instance"]
    for name, value in labels.items():
        if name in ("__name__", "service", "instance") or name in exclude:
            continue
        if include is not None and name not in include:
            continue
        tags[tag_key(name)] = value
    return tags


def tag_key_of_label(label: str, include: Collection[str] | None = None, exclude: Collection[str] = ()) -> str | None:
    """The tag key that holds exactly `label`'s value in every series `tags_of` builds (absent where the label is),
    or None when no tag does: `__name__` (the metric tag may hold the query's name), `service` (it may hold the
    job's value), or a label left out by `include`/`exclude`."""
    if label == "instance":
        return "instance"
    if label in ("__name__", "service") or label in exclude or (include is not None and label not in include):
        return None
    return tag_key(label)


def series_id(tags: Mapping[str, str]) -> str:
    """A stable 16-hex fingerprint of a series' stored tag set (the same in every tier and every run)."""
    canonical = "\x1f".join(f"{k}\x1e{v}" for k, v in sorted(tags.items()) if v != "")
    return hashlib.blake2b(canonical.encode(), digest_size=8).hexdigest()


def stored_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """A tag set as InfluxDB stores it and gives it back: the representable rule applied, empty ones left out."""
    return {representable(k): representable(v) for k, v in tags.items() if escape_tag(k) and escape_tag(v)}

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
