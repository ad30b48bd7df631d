"""The Kafka message contract between producer and consumer (schema version 1).

One message = one series' samples from one extraction window:

    {"v": 1, "query": "availability", "metric_type": "availability",
     "labels": {"__name__": "up", "job": "test-app", "instance": "localhost:8000"},
     "window": [start_ms, end_ms],              # the window (start, end] the samples came from
     "samples": [[1732550400123, "1"], ...]}    # [timestamp ms, value exactly as Prometheus gave it]

Values stay strings ("NaN", "+Inf" included): the consumer decides what InfluxDB can store.
Key: `series_key(query, labels)`, so a series always lands on the same partition.
Headers: `healthpipe-schema` = the version. docs/message-format.md holds the JSON Schema.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from healthpipe.common.errors import Malformed

SCHEMA_VERSION = 1
SCHEMA_HEADER = "healthpipe-schema"

JSON_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://healthpipe.dev/schemas/series-window-v1.json",
    "title": "healthpipe series window",
    "type": "object",
    "required": ["v", "query", "metric_type", "labels", "window", "samples"],
    "additionalProperties": False,
    "properties": {
        "v": {"const": SCHEMA_VERSION},
        "query": {"type": "string", "minLength": 1},
        "metric_type": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "window": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "integer"}],
                   "minItems": 2, "maxItems": 2},
        "samples": {"type": "array", "items": {
            "type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}],
            "minItems": 2, "maxItems": 2}},
    },
}


@dataclass(frozen=True, slots=True)
class SeriesWindow:
    """One series' samples from one window (start_ms, end_ms]."""

    query: str
    metric_type: str
    labels: Mapping[str, str]
    start_ms: int
    end_ms: int
    samples: Sequence[tuple[int, str]]  # a list, or RawSamples from the consumer's decode

    @property
    def key(self) -> bytes:
        return series_key(self.query, self.labels)

    def to_json(self) -> bytes:
        return orjson.dumps({
            "v": SCHEMA_VERSION, "query": self.query, "metric_type": self.metric_type,
            "labels": dict(self.labels), "window": [self.start_ms, self.end_ms],
            "samples": (self.samples if isinstance(self.samples, list)
                        # JSON text already: written as it is (the receiver's compiled samples)
                        else orjson.Fragment(bytes(self.samples.text)) if isinstance(self.samples, RawSamples)
                        else list(self.samples)),
        })

    def split(self, max_samples: int, max_bytes: int) -> Iterator[SeriesWindow]:
        """This window as messages of at most `max_samples` samples and about `max_bytes` bytes each."""
        # ~40 bytes per [ts, "value"] pair is generous; the labels are paid once per message, at most 6 bytes a
        # character in JSON (\u00XX): a window surely under the limit is itself, without encoding its labels to
        # find out (a remote-write request is a hundred small windows)
        n = len(self.samples)
        if n <= max_samples and 40 * n + 200 + 6 * sum(len(k) + len(v) for k, v in self.labels.items()) <= max_bytes:
            yield self
            return
        overhead = len(orjson.dumps(dict(self.labels))) + 200
        per_message = max(1, min(max_samples, (max_bytes - overhead) // 40))
        for i in range(0, max(len(self.samples), 1), per_message):
            yield SeriesWindow(self.query, self.metric_type, self.labels, self.start_ms, self.end_ms,
                               self.samples[i:i + per_message])


def series_key(query: str, labels: Mapping[str, str]) -> bytes:
    """A stable fingerprint of (query, sorted labels): 16 hex chars, the same in every process and run."""
    canonical = orjson.dumps([query, sorted(labels.items())])
    return hashlib.blake2b(canonical, digest_size=8).hexdigest().encode()


class _Message(msgspec.Struct):
    """The contract as a typed struct: msgspec decodes and validates it in one pass (no per-sample Python)."""

    v: int
    query: str
    metric_type: str
    labels: dict[str, str]
    window: tuple[int, int]
    samples: list[tuple[int, str]]


_DECODER = msgspec.json.Decoder(_Message)


class _MessageRawSamples(_Message):
    """The contract with the samples left as JSON text, for a caller that reads them itself."""

    samples: msgspec.Raw  # type: ignore[assignment]


_RAW_DECODER = msgspec.json.Decoder(_MessageRawSamples)
_SAMPLES_DECODER = msgspec.json.Decoder(list[tuple[int, str]])


class RawSamples(Sequence):
    """A message's samples still as their JSON text, which a scanner found to be the usual [[int, "str"], ...]:
    decoded into (timestamp, value) tuples only when something reads them. The consumer's compiled path formats
    its lines straight from the text (healthpipe/schema/_fastline.c), so most samples never become Python objects."""

    __slots__ = ("text", "_count", "_items")

    def __init__(self, text: msgspec.Raw | bytes, count: int):
        self.text = text
        self._count = count
        self._items: list[tuple[int, str]] | None = None

    def items(self) -> list[tuple[int, str]]:
        if self._items is None:
            self._items = _SAMPLES_DECODER.decode(memoryview(self.text))
        return self._items

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):  # noqa: ANN001 (an int or a slice, as a list takes)
        return self.items()[index]

    def __iter__(self) -> Iterator[tuple[int, str]]:
        return iter(self.items())

    def __eq__(self, other: object) -> bool:
        return self.items() == (other.items() if isinstance(other, RawSamples) else other)

    __hash__ = None  # type: ignore[assignment]  # unhashable, like the list it stands for

    def __repr__(self) -> str:
        return f"RawSamples({self._count} samples)"




def decode(value: bytes | None, headers: Any = None, max_bytes: int = 1024 * 1024,
           scan_samples: Callable[[Any], int] | None = None) -> SeriesWindow:
    """Parse and validate one message value. Raises Malformed with a reason word.

    A well-formed message takes the typed fast path; anything else (a broken message, or samples whose
    timestamp or value are not the usual int and string) the checking path below, which names the reason or
    lets the sample through for the transformer to count. `scan_samples` (the consumer's compiled scanner): leave
    well-formed samples as JSON text (RawSamples), read without becoming Python objects."""
    if value is None:
        raise Malformed("empty", "message has no value")
    if len(value) > max_bytes:
        raise Malformed("oversized", f"{len(value)} bytes > limit {max_bytes}")
    for name, header_value in headers or []:
        if name == SCHEMA_HEADER and header_value != str(SCHEMA_VERSION).encode():
            raise Malformed("unknown_version", f"header {SCHEMA_HEADER}={header_value!r}")
    if scan_samples is not None:  # samples left as text when the scanner vouches for them (count >= 0)
        try:
            r = _RAW_DECODER.decode(value)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return _decode_checked(value)
        if r.v == SCHEMA_VERSION and r.query and (count := scan_samples(r.samples)) >= 0:
            return SeriesWindow(r.query, r.metric_type, r.labels, r.window[0], r.window[1],
                                RawSamples(r.samples, count))
    try:
        m = _DECODER.decode(value)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return _decode_checked(value)
    if m.v == SCHEMA_VERSION and m.query:
        return SeriesWindow(m.query, m.metric_type, m.labels, m.window[0], m.window[1], m.samples)
    return _decode_checked(value)


def _decode_checked(value: bytes) -> SeriesWindow:
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise Malformed("not_json", str(exc)) from None
    if not isinstance(doc, dict):
        raise Malformed("missing_fields", f"expected an object, got {type(doc).__name__}")
    if doc.get("v") != SCHEMA_VERSION:
        raise Malformed("unknown_version", f"v={doc.get('v')!r}, this consumer reads v={SCHEMA_VERSION}")
    missing = [f for f in ("query", "metric_type", "labels", "window", "samples") if f not in doc]
    if missing:
        raise Malformed("missing_fields", f"missing {', '.join(missing)}")
    labels, window, samples = doc["labels"], doc["window"], doc["samples"]
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise Malformed("bad_field", "labels must map strings to strings")
    if not (isinstance(window, list) and len(window) == 2 and all(isinstance(w, int) for w in window)):
        raise Malformed("bad_field", "window must be [start_ms, end_ms]")
    if not isinstance(samples, list) or not all(isinstance(s, list) and len(s) == 2 for s in samples):
        raise Malformed("bad_field", "samples must be a list of [timestamp_ms, value] pairs")
    if not isinstance(doc["query"], str) or not doc["query"]:
        raise Malformed("bad_field", "query must be a non-empty string")
    # Sample-level problems (a null value, a bad timestamp) are the transformer's to count, not ours.
    return SeriesWindow(doc["query"], str(doc["metric_type"]), labels, window[0], window[1],
                        [(s[0], s[1]) for s in samples])


def headers() -> list[tuple[str, bytes]]:
    return [(SCHEMA_HEADER, str(SCHEMA_VERSION).encode())]
