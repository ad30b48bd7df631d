"""A remote-write request body into series (labels, float samples; metadata is not read: the stored `metric_type` is
receive.metric_type for every series, so that a series' tags do not change with the protocol version or with
whether its metadata came in the same request), both messages of the spec:
`prometheus.WriteRequest` (remote write 1.0) and `io.prometheus.write.v2.Request` (2.0, labels as references into a
symbols table), snappy-compressed (block format) protobuf.

What can never succeed is a `BadRequest` (HTTP 400: Prometheus drops the batch, so only for input that no retry
could fix), with a short reason code for the metrics and a message naming the cause; a message or encoding this
receiver does not speak is `Unsupported` (415). Nothing here touches Kafka.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cramjam
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from healthpipe.common.errors import HealthpipeError
from healthpipe.common.messages import RawSamples
from healthpipe.common.promql import LABEL_NAME
from healthpipe.receive.proto import remote_write_v1_pb2 as v1
from healthpipe.receive.proto import remote_write_v2_pb2 as v2

try:
    from healthpipe.receive import _samples as _compiled
except ImportError:  # pragma: no cover - built by `make install` where a C compiler is; _samples() does the same
    _compiled = None  # type: ignore[assignment]

V1 = "prometheus.WriteRequest"
V2 = "io.prometheus.write.v2.Request"
# Prometheus' staleness marker: a NaN with this bit pattern, written when a series disappears. The query API never
# returns it, so neither does the pipeline (it would be an extra point nobody can verify); counted, not stored.
STALE_NAN_BITS = 0x7FF0000000000002

class BadRequest(HealthpipeError):
    """The body can never be accepted (HTTP 400). `reason`: a short code for the metrics."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class TooLarge(BadRequest):
    """A body over a size limit, compressed or inflated (HTTP 413)."""

    def __init__(self, message: str):
        super().__init__("too_large", message)


class Unsupported(HealthpipeError):
    """A content type or encoding this receiver does not speak (HTTP 415)."""


@dataclass(slots=True)
class Series:
    labels: dict[str, str]
    # (timestamp ms, value as Prometheus' query API writes it): a list, or RawSamples (the compiled loop's JSON text)
    samples: Sequence[tuple[int, str]]
    first_ms: int  # the smallest and the largest timestamp of the samples
    last_ms: int


@dataclass(slots=True)
class Decoded:
    message: str  # V1 or V2
    series: list[Series]
    histograms: int = 0  # native histogram samples received (not yet stored: counted and logged)
    exemplars: int = 0  # received, not stored
    stale_markers: int = 0  # staleness markers received, not stored (see STALE_NAN_BITS)

    @property
    def samples(self) -> int:
        return sum(len(s.samples) for s in self.series)


def message_of(content_type: str | None) -> str:
    """The protobuf message a Content-Type names, as the 2.0 spec negotiates it: no `proto` parameter is 1.0."""
    media, _, params = (content_type or "").partition(";")
    if media.strip().lower() != "application/x-protobuf":
        raise Unsupported(f"Content-Type {content_type!r}: remote write is application/x-protobuf "
                          f"(proto={V1} or proto={V2})")
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "proto":
            proto = value.strip().strip('"')
            if proto not in (V1, V2):
                raise Unsupported(f"proto={proto}: this receiver speaks {V1} and {V2}")
            return proto
    return V1


def decompress(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """The snappy block the spec requires, refused before it is inflated past `max_bytes`."""
    if (content_encoding or "").strip().lower() != "snappy":
        raise Unsupported(f"Content-Encoding {content_encoding!r}: remote write is snappy")
    try:
        size = _snappy_length(body)
        if size > max_bytes:
            raise TooLarge(f"the body inflates to {size} bytes, over receive.max_decoded_bytes ({max_bytes})")
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise BadRequest("bad_snappy", f"the body is not a snappy block: {exc}") from None


def _snappy_length(body: bytes) -> int:
    """The uncompressed length a snappy block starts with (a varint)."""
    size, shift = 0, 0
    for i, byte in enumerate(body[:10]):
        size |= (byte & 0x7F) << shift
        if byte < 0x80:
            return size
        shift += 7
        if i == 4:
            break
    raise BadRequest("bad_snappy", "the body is not a snappy block: no length at its start")


def format_value(value: float) -> str:
    """A float as Prometheus' query API writes it (Go's FormatFloat(v, 'f', -1, 64)): the shortest digits that
    round-trip, never an exponent; NaN, +Inf, -Inf."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    if "e" not in text and "E" not in text:
        return text[:-2] if text.endswith(".0") else text
    mantissa, _, exponent = text.partition("e")
    digits, point = mantissa.lstrip("-").replace(".", ""), mantissa.lstrip("-").find(".")
    position = (point if point >= 0 else len(mantissa.lstrip("-"))) + int(exponent)
    sign = "-" if value < 0 else ""
    if position <= 0:
        out = "0." + "0" * -position + digits
    elif position >= len(digits):
        out = digits + "0" * (position - len(digits))
    else:
        out = digits[:position] + "." + digits[position:]
    out = out.rstrip("0").rstrip(".") if "." in out else out
    return sign + out


def _is_stale(value: float) -> bool:
    return math.isnan(value) and struct.unpack("<Q", struct.pack("<d", value))[0] == STALE_NAN_BITS


@functools.lru_cache(maxsize=4096)
def _is_label_name(name: str) -> bool:
    # Label names as InfluxDB tags and Flux identifiers see them: Prometheus' classic rule, the one the producer's
    # selectors check (its UTF-8 names are refused with a reason rather than stored under a name no query could
    # spell). Cached: the same few names in every series of every request, a lookup a sixth of the match's cost.
    return LABEL_NAME.fullmatch(name) is not None


def _labels(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for name, value in pairs:
        if not _is_label_name(name):
            raise BadRequest("bad_label_name", f"label name {name!r} is not [a-zA-Z_][a-zA-Z0-9_]*")
        if name in labels:
            raise BadRequest("duplicate_label", f"label {name!r} appears twice in one series")
        if value:  # an empty value is the label's absence (Prometheus' own rule)
            labels[name] = value
    if "__name__" not in labels:
        raise BadRequest("no_metric_name", f"a series without __name__: {labels}")
    return labels


def _series(labels: dict[str, str], series: Message, raw: bytes | None, decoded: Decoded) -> None:
    """The series into `decoded` with its samples, unless none is left (staleness markers only). `raw`: its bytes,
    for the compiled loop (None where it is not built)."""
    if raw is not None and _compiled is not None and (done := _compiled.samples_json(raw)) is not None:
        text, count, first, last, stale = done
        decoded.stale_markers += stale
        if count:
            decoded.series.append(Series(labels, RawSamples(text, count), first, last))
        return
    kept = _samples(series.samples, decoded)
    if kept:
        decoded.series.append(Series(labels, kept, min(kept)[0], max(kept)[0]))


def _samples(samples: Sequence, decoded: Decoded) -> list[tuple[int, str]]:
    # The hot loop of a request in Python (profiled: three quarters of its CPU; _samples.c does the same without a
    # Python object per sample): repr is already the shortest round-trip text; only a trailing ".0", an
    # exponent, NaN and the infinities need format_value's rules.
    out = []
    for s in samples:
        value = s.value
        if value != value:  # NaN: a staleness marker is counted, not stored
            if _is_stale(value):
                decoded.stale_markers += 1
                continue
            out.append((s.timestamp, "NaN"))
            continue
        text = repr(value)
        if text[-2:] == ".0":
            text = text[:-2]
        elif "e" in text or "n" in text:  # 1e-07, inf
            text = format_value(value)
        out.append((s.timestamp, text))
    return out


def decode(body: bytes, message: str) -> Decoded:
    """A decompressed body as the `message` (V1 or V2) into series; BadRequest for what can never be accepted."""
    try:
        if message == V2:
            return _decode_v2(body)
        return _decode_v1(body)
    except DecodeError as exc:
        raise BadRequest("bad_protobuf", f"the body is not a {message}: {exc}") from None


def _foreign_fields(request: Message, message: str, other: str) -> None:
    """Top-level fields the message does not have: the other version's body under this one's Content-Type (parsed
    as this message it would be empty, and answered 2xx with nothing stored)."""
    unknown = sorted({f.field_number for f in UnknownFieldSet(request)})
    if unknown:
        raise BadRequest("wrong_message", f"the body has fields {unknown} that {message} does not: is it a "
                                          f"{other}? (Content-Type proto= says which)")


def _decode_v1(body: bytes) -> Decoded:
    request = v1.WriteRequest.FromString(body)
    _foreign_fields(request, V1, V2)
    decoded = Decoded(V1, [])
    for ts in request.timeseries:
        # the compiled loops read the series' own bytes (upb writes them in C): no Python object per label or sample
        raw = ts.SerializeToString() if _compiled is not None else None
        pairs = _compiled.label_pairs(raw) if raw is not None and _compiled is not None else None
        labels = _labels(pairs if pairs is not None else ((label.name, label.value) for label in ts.labels))
        decoded.histograms += len(ts.histograms)
        decoded.exemplars += len(ts.exemplars)
        _series(labels, ts, raw, decoded)
    return decoded


def _decode_v2(body: bytes) -> Decoded:
    request = v2.Request.FromString(body)
    _foreign_fields(request, V2, V1)
    symbols = list(request.symbols)  # a str each once, not at every reference
    if symbols and symbols[0] != "":
        raise BadRequest("bad_symbols", "symbols[0] must be the empty string (remote write 2.0)")
    decoded = Decoded(V2, [])
    for ts in request.timeseries:
        refs = list(ts.labels_refs)
        if len(refs) % 2:
            raise BadRequest("bad_symbol_ref", f"labels_refs holds an odd number of references ({len(refs)})")
        if refs and max(refs) >= len(symbols):
            raise BadRequest("bad_symbol_ref", f"labels_refs points at symbol {max(refs)} of a table of "
                                               f"{len(symbols)}")
        labels = _labels((symbols[refs[i]], symbols[refs[i + 1]]) for i in range(0, len(refs), 2))
        decoded.histograms += len(ts.histograms)
        decoded.exemplars += len(ts.exemplars)
        _series(labels, ts, ts.SerializeToString() if _compiled is not None else None, decoded)
    return decoded
