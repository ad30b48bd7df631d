"""The receiver's compiled samples loop (healthpipe/receive/_samples.c) writes exactly what the Python loop
(decode._samples) writes: the same values as text, the same staleness markers left out, the same first and last
timestamp, and the message built from it is the same bytes."""

import os
import random
import struct

import orjson
import pytest

from healthpipe.common.messages import RawSamples, SeriesWindow
from healthpipe.receive import decode as d
from healthpipe.receive.proto import remote_write_v1_pb2 as v1
from tests.unit.test_receive_decode import STALE, UP, received, request_v1, request_v2, snappy

compiled = d._compiled


def test_the_compiled_loop_is_built_where_ci_runs():
    """CI (and any machine with a C compiler) builds it; without it the receiver runs the Python loop."""
    if os.environ.get("CI") == "true":
        assert compiled is not None


needs_compiled = pytest.mark.skipif(compiled is None, reason="healthpipe/receive/_samples.c not built (no compiler)")


def series_of(pairs: list[tuple[int, float]]) -> v1.TimeSeries:
    series = v1.TimeSeries()
    series.labels.add(name="__name__", value="up")
    for t, v in pairs:
        series.samples.add(timestamp=t, value=v)
    series.exemplars.add(value=1.0, timestamp=5)  # skipped, as the labels are
    return series


def compiled_loop(pairs: list[tuple[int, float]]):
    return compiled.samples_json(series_of(pairs).SerializeToString())


def python_loop(pairs: list[tuple[int, float]]) -> tuple[list[tuple[int, str]], int]:
    decoded = d.Decoded(d.V1, [])
    return d._samples(series_of(pairs).samples, decoded), decoded.stale_markers


def random_doubles(rng: random.Random, n: int) -> list[float]:
    """Every kind of double: random bit patterns (any exponent), the round decimals counters hold, small integers."""
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            out.append(struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0])
        elif kind == 1:
            out.append(round(rng.uniform(-1e6, 1e6), rng.randint(0, 6)))
        elif kind == 2:
            out.append(float(rng.randint(-10**12, 10**12)))
        else:
            out.append(rng.uniform(0, 1) * 10 ** rng.randint(-8, 20))
    return out


@needs_compiled
@pytest.mark.parametrize("seed", range(5))
def test_random_values_are_written_as_the_python_loop_writes_them(seed):
    rng = random.Random(seed)
    written = unusual = 0
    for value in random_doubles(rng, 4000):
        pairs = [(1000, value), (2000, 1.0)]
        done = compiled_loop(pairs)
        kept, stale = python_loop(pairs)
        if done is None:  # left to the Python loop: only values whose shortest text has an exponent
            assert "e" in repr(value), value
            unusual += 1
            continue
        text, count, first, last, stale_c = done
        assert orjson.loads(text) == [list(p) for p in kept], value
        assert (count, stale_c, first, last) == (len(kept), stale, 1000, 2000)
        written += 1
    assert written > 2000 and unusual > 100  # both ways were taken


@needs_compiled
@pytest.mark.parametrize("value", [1.0, 0.0, -0.0, 0.1, -2.5, 1e-4, 9.999e-5, 1e15, 9999999999999998.0, 1e16,
                                   float("inf"), float("-inf"), float("nan"), 5e-324, 123456789.125,
                                   0.30000000000000004, 1.7976931348623157e308])
def test_edge_values(value):
    pairs = [(5, value)]
    done = compiled_loop(pairs)
    kept, _ = python_loop(pairs)
    if done is None:
        assert "e" in repr(value)
    else:
        assert orjson.loads(done[0]) == [list(p) for p in kept]


@needs_compiled
def test_staleness_markers_are_counted_and_left_out_and_the_timestamps_span_what_is_kept():
    pairs = [(3000, 2.0), (-5, 1.5), (1000, STALE), (9000, STALE), (2000, float("nan"))]
    text, count, first, last, stale = compiled_loop(pairs)
    assert orjson.loads(text) == [[3000, "2"], [-5, "1.5"], [2000, "NaN"]]
    assert (count, first, last, stale) == (3, -5, 3000, 2)
    assert compiled_loop([(1000, STALE)])[1:] == (0, 0, 0, 1)
    assert compiled_loop([]) == (b"[]", 0, 0, 0, 0)


@needs_compiled
@pytest.mark.parametrize("message", [d.V1, d.V2])
def test_a_request_is_the_same_series_and_messages_with_and_without_the_compiled_loop(monkeypatch, message):
    rng = random.Random(7)
    # odd series: any double (most have one whose text needs an exponent); even: the decimals counters hold
    values = [random_doubles(rng, 30) if i % 2 else [round(rng.uniform(-1e6, 1e6), 3) for _ in range(30)]
              for i in range(40)]
    # labels as they come: unicode, quotes, an empty value (the label's absence), in any order
    series = [({"instance": f"h{i}:9100", **UP, "zone": "zürich \"1\" ✓", "empty": "", "n": str(i)},
               [(1000 * k + i, v) for k, v in enumerate(values[i])] + [(99_000, STALE)]) for i in range(40)]
    body = snappy(request_v1(series) if message == d.V1 else request_v2(series))
    content_type = f"application/x-protobuf;proto={message}"
    fast = received(body, content_type)
    monkeypatch.setattr(d, "_compiled", None)
    slow = received(body, content_type)
    assert any(isinstance(s.samples, RawSamples) for s in fast.series)
    assert any(isinstance(s.samples, list) for s in fast.series)  # a series with an exponent value
    assert fast == slow and fast.samples == slow.samples and fast.stale_markers == slow.stale_markers == 40

    def messages(decoded):
        return [part.to_json() for s in decoded.series
                for part in SeriesWindow("q", "gauge", s.labels, s.first_ms - 1, s.last_ms, s.samples)
                .split(10_000, 1_000_000)]

    assert messages(fast) == messages(slow)
