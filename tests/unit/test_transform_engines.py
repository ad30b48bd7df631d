"""The fast transform engine against the reference (the plan's pandas pipeline): byte-identical lines, the same
line-to-window mapping and the same drop counts, for hostile labels and values, whatever the batch."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthpipe.common.config import TransformSettings
from healthpipe.common.messages import SeriesWindow, decode
from healthpipe.sinks.influx.transformer import DataTransformer

NOW_MS = 1_800_000_000_000

label_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
decimal_text = st.from_regex(r"-?[0-9]{1,18}(\.[0-9]{1,18})?", fullmatch=True)
plain_value = st.one_of(st.floats(allow_nan=False, allow_infinity=False).map(repr), decimal_text,
                        st.integers(-10**20, 10**20).map(str),
                        st.sampled_from(["0", "1", "0.5", "1e-7", "-0", "123456789.123456789"]))
odd_value = st.one_of(st.sampled_from(["NaN", "+Inf", "-Inf", "nan", "inf", "", " 1", "1_000", "१", "abc", "1e400",
                                       "0x10", "+nan", "-0", "-0.0", "-00", "00"]), st.none(), label_text)
timestamp = st.one_of(st.integers(NOW_MS - 10**9, NOW_MS), st.sampled_from([0, -5, NOW_MS + 10**9]),
                      st.floats(1, 2e12), st.booleans(), st.text(max_size=3))


@st.composite
def window(draw, odd: bool):
    name = draw(st.sampled_from(["up", "other", "not_allowed"]))
    labels = {"__name__": name, "instance": draw(st.sampled_from(["a", "b"]))}
    labels |= draw(st.dictionaries(st.sampled_from(["metric", "label_metric", "job", "value", "_x", "a b", "é"]),
                                   label_text, max_size=3))
    start = draw(st.integers(NOW_MS - 10**8, NOW_MS - 10**6))
    n = draw(st.integers(0, 6))
    if odd:
        samples = [(draw(timestamp), draw(st.one_of(plain_value, odd_value))) for _ in range(n)]
    else:
        steps = draw(st.lists(st.integers(1, 5000), min_size=n, max_size=n))
        ts = [start + sum(steps[:i + 1]) for i in range(n)]
        samples = [(t, draw(st.one_of(plain_value, st.sampled_from(["NaN", "+Inf", "-Inf"])))) for t in ts]
    return SeriesWindow(draw(st.sampled_from(["availability", "q"])), "gauge", labels, start, start + 10**6, samples)


def both(batch, engine="fast"):
    cfg = TransformSettings(valid_metrics=["up", "other", "availability", "q"])
    fast = DataTransformer(cfg.model_copy(update={"engine": engine}), clock=lambda: NOW_MS / 1000)
    reference = DataTransformer(cfg.model_copy(update={"engine": "reference"}), clock=lambda: NOW_MS / 1000)
    return fast.transform(batch), reference.transform(batch)


def assert_same(fast, reference) -> None:
    """Byte-identical lines, the same window per line, the same drop counts."""
    assert fast.lines == reference.lines
    assert fast.sources == reference.sources
    assert +fast.dropped == +reference.dropped and fast.samples_in == reference.samples_in


@pytest.mark.parametrize("engine", ["fast", "python"])
@settings(max_examples=300, deadline=None)
@given(batch=st.lists(window(odd=False), max_size=6))
def test_clean_batches_take_the_fast_engine_and_match_the_reference(engine, batch):
    assert_same(*both(batch, engine))


@pytest.mark.parametrize("engine", ["fast", "python"])
@settings(max_examples=300, deadline=None)
@given(batch=st.lists(window(odd=True), max_size=6))
def test_any_batch_matches_the_reference(engine, batch):
    assert_same(*both(batch, engine))


def test_well_formed_messages_take_the_typed_decoder_and_odd_ones_still_decode():
    w = SeriesWindow("q", "gauge", {"a": "b"}, 1, 2, [(2, "1")])
    assert decode(w.to_json()) == w
    odd = b'{"v":1,"query":"q","metric_type":"g","labels":{},"window":[1,2],"samples":[[1.5,"1"],[2,null]]}'
    assert decode(odd).samples == [(1.5, "1"), (2, None)]  # the transformer counts these, not the decoder


def test_the_fast_engine_takes_ordinary_batches():
    cfg = TransformSettings(valid_metrics=["up"])
    t = DataTransformer(cfg, clock=lambda: NOW_MS / 1000)
    batch = [SeriesWindow("availability", "gauge", {"__name__": "up", "instance": f"i{i}"}, 0, NOW_MS,
                          [(NOW_MS - 3000, "1"), (NOW_MS - 2000, "NaN"), (NOW_MS - 1000, "0.25")]) for i in range(3)]
    for compiled in (False, True):
        fast = t._transform_fast(batch, compiled=compiled)
        assert fast is not None and len(fast.lines) == 6 and fast.dropped == {"nan": 3}


def test_the_compiled_hot_path_is_built_where_ci_runs():
    """make install builds healthpipe/schema/_fastline.c; CI has a compiler, so there it must be there."""
    from healthpipe.sinks.influx import transformer

    if os.environ.get("CI") == "true" or transformer._fastline is not None:
        assert transformer._fastline is not None
    else:
        pytest.skip("no compiled hot path here (no C compiler at install time)")


@settings(max_examples=3000, deadline=None)
@given(st.one_of(decimal_text, st.floats(allow_nan=False, allow_infinity=False).map(repr),
                 st.floats(allow_nan=False, allow_infinity=False).map(lambda f: format(f, "f"))))
def test_the_compiled_value_text_is_pythons_repr_of_the_float(text):
    """The compiled fast path writes plain decimals without a float round trip: it must equal repr(float(text))."""
    from healthpipe.sinks.influx import transformer

    if transformer._fastline is None:
        pytest.skip("no compiled hot path here")
    done = transformer._fastline.format_window("m", [(1, text)], 1e18)
    if float(text) == 0 and str(float(text)).startswith("-"):
        assert done is None  # negative zero is the reference engine's to decide
    else:
        assert done is not None
        assert done[0] == [f"m value={float(text)!r} 1"]


@pytest.mark.parametrize("odd", [False, True])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_samples_left_as_json_text_decode_and_transform_exactly_as_decoded_ones(odd, data):
    """The consumer's decode leaves well-formed samples as JSON text (RawSamples) for _fastline.format_text: the
    windows equal the fully decoded ones, and every engine gives the reference's lines from them."""
    from healthpipe.schema import scan_samples as SCAN_SAMPLES

    if SCAN_SAMPLES is None:
        pytest.skip("no compiled hot path here")
    texts = [w.to_json() for w in data.draw(st.lists(window(odd=odd), max_size=6))]
    decoded = [decode(t) for t in texts]
    as_text = [decode(t, scan_samples=SCAN_SAMPLES) for t in texts]
    assert as_text == decoded
    assert_same(*both(as_text))
    assert both(as_text)[0].lines == both(decoded)[0].lines


@pytest.mark.parametrize("odd", [False, True])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_request_bodies_are_the_reference_lines_as_bytes(odd, data):
    """What the consumer posts (transform_bodies, built as bytes in C from the JSON text) is the reference's lines,
    each ending in a newline, and each body's lines come from the window the reference says."""
    from healthpipe.schema import scan_samples as SCAN_SAMPLES
    from healthpipe.sinks.influx.sink import requests_of

    texts = [w.to_json() for w in data.draw(st.lists(window(odd=odd), max_size=6))]
    batch = [decode(t, scan_samples=SCAN_SAMPLES) for t in texts]
    cfg = TransformSettings(valid_metrics=["up", "other", "availability", "q"])
    bodies = DataTransformer(cfg, clock=lambda: NOW_MS / 1000).transform_bodies(batch)
    _, reference = both(batch)
    assert b"".join(body for _, body, _ in bodies.bodies) == "".join(f"{line}\n" for line in reference.lines).encode()
    assert [w for w, _, n in bodies.bodies for _ in range(n)] == reference.sources
    assert +bodies.dropped == +reference.dropped and bodies.samples_in == reference.samples_in
    size = data.draw(st.integers(1, 8))
    requests = requests_of(bodies, size)
    assert [line for r in requests for line in r.body.decode().split("\n")[:r.lines]] == reference.lines
    assert [r.window_of(i) for r in requests for i in range(r.lines)] == reference.sources
    assert all(r.lines <= size or len(r.windows) == 1 for r in requests)


@pytest.mark.parametrize("samples, count", [
    (b'[]', 0), (b' [ ] ', 0), (b'[[1,"2"]]', 1), (b'[ [ 1 , "2" ] , [3,"x y"] ]\n', 2),
    (b'[[-5,"1"]]', 1), (b'[[123456789012345678,"1"]]', 1),
    (b'[[1234567890123456789,"1"]]', -1),  # more than 18 digits: the general decoder
    (b'[[1.0,"2"]]', -1), (b'[[1e3,"2"]]', -1), (b'[[01,"2"]]', -1), (b'[[1,2]]', -1), (b'[[1,"a\\"b"]]', -1),
    (b'[[1,"\xc3\xa9"]]', -1), (b'[[1,"2"],]', -1), (b'[[1,"2"]] x', -1), (b'[[1,"2",3]]', -1), (b'[1,"2"]', -1),
    (b'[[1,"2"]', -1), (b'[[1,null]]', -1), (b'{}', -1),
])
def test_the_sample_scanner_vouches_only_for_the_usual_shape(samples, count):
    from healthpipe.schema import scan_samples as SCAN_SAMPLES

    if SCAN_SAMPLES is None:
        pytest.skip("no compiled hot path here")
    assert SCAN_SAMPLES(samples) == count
    message = b'{"v":1,"query":"q","metric_type":"g","labels":{},"window":[1,2],"samples":' + samples + b"}"
    try:
        expected = decode(message)
    except Exception as exc:  # noqa: BLE001 (the same error either way)
        with pytest.raises(type(exc)):
            decode(message, scan_samples=SCAN_SAMPLES)
        return
    got = decode(message, scan_samples=SCAN_SAMPLES)
    assert got == expected and len(got.samples) == len(expected.samples)
    assert type(got.samples).__name__ == ("RawSamples" if count >= 0 else "list")
