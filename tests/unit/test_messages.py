import orjson
import pytest

from healthpipe.common.errors import Malformed
from healthpipe.common.messages import SCHEMA_HEADER, SeriesWindow, decode, headers, series_key


def window(n=3, **labels):
    return SeriesWindow("availability", "availability", {"__name__": "up", **labels}, 0, 10_000,
                        [(1000 * i, str(i)) for i in range(1, n + 1)])


def test_fingerprint_is_stable_and_order_independent():
    a = series_key("q", {"b": "2", "a": "1"})
    assert a == series_key("q", {"a": "1", "b": "2"})
    assert a == series_key("q", dict(reversed(list({"a": "1", "b": "2"}.items()))))
    assert series_key("q2", {"a": "1", "b": "2"}) != a


def test_fingerprint_pinned_across_releases():
    # Changing this moves series to other partitions: only with a schema version bump.
    assert series_key("availability", {"__name__": "up", "job": "test-app"}) == b"9878e74dea488490"
    assert len(series_key("x", {})) == 16


def test_round_trip():
    w = window(job="test-app", instance="h:1")
    assert decode(w.to_json(), headers()) == w


def test_values_stay_strings():
    w = SeriesWindow("q", "gauge", {}, 0, 3, [(1, "NaN"), (2, "+Inf"), (3, "-Inf")])
    assert orjson.loads(w.to_json())["samples"] == [[1, "NaN"], [2, "+Inf"], [3, "-Inf"]]


@pytest.mark.parametrize("value,hdrs,reason", [
    (None, None, "empty"),
    (b"\x00\xff garbage", None, "not_json"),
    (b'{"v": 1, "query": "q"', None, "not_json"),
    (b'{"v": 99, "query": "q"}', None, "unknown_version"),
    (b'{"v": 1}', [(SCHEMA_HEADER, b"7")], "unknown_version"),
    (b'{"v": 1, "query": "q"}', None, "missing_fields"),
    (b"[1, 2]", None, "missing_fields"),
    (b'{"v":1,"query":"q","metric_type":"g","labels":{"a":1},"window":[0,1],"samples":[]}', None, "bad_field"),
    (b'{"v":1,"query":"q","metric_type":"g","labels":{},"window":[0],"samples":[]}', None, "bad_field"),
    (b'{"v":1,"query":"q","metric_type":"g","labels":{},"window":[0,1],"samples":[1]}', None, "bad_field"),
    (b"x" * 2000, None, "oversized"),
])
def test_malformed_messages_name_their_reason(value, hdrs, reason):
    with pytest.raises(Malformed) as exc:
        decode(value, hdrs, max_bytes=1024)
    assert exc.value.reason == reason


def test_split_bounds_count_and_bytes_and_keeps_every_sample():
    w = window(n=2500)
    parts = list(w.split(max_samples=1000, max_bytes=256 * 1024))
    assert [len(p.samples) for p in parts] == [1000, 1000, 500]
    assert [s for p in parts for s in p.samples] == w.samples
    small = list(w.split(max_samples=1000, max_bytes=4096))
    assert all(len(p.to_json()) <= 4096 for p in small)
    assert sum(len(p.samples) for p in small) == 2500
    assert {p.key for p in parts} == {w.key}


@pytest.mark.parametrize("text", ["a", "\x01", '"', "\\", "ü", "\u2028"])
def test_a_window_kept_whole_fits_the_byte_limit_whatever_its_labels_hold(text):
    """A window under the limit is passed on without encoding its labels first (the receiver's hundred small
    windows a request): JSON's longest escape (\\u00XX, 6 bytes a character) keeps that estimate safe."""
    for repeat in (10, 300, 600):
        w = window(n=20, pod=text * repeat, **{"x" * 50: text * repeat})
        for limit in (2048, 4096, 8192, 16384):
            parts = list(w.split(max_samples=1000, max_bytes=limit))
            assert [s for p in parts for s in p.samples] == w.samples
            assert all(len(p.to_json()) <= limit for p in parts if len(p.samples) > 1), (text, repeat, limit)
