"""The archive's prepare from samples left as JSON text (the compiled path) against the same windows decoded
into Python objects: the same timestamps, the same value bits (NaN and ±Inf kept), the same drops."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from healthpipe.common.config import ArchiveSettings
from healthpipe.common.messages import SeriesWindow, decode
from healthpipe.common.records import Source
from healthpipe.schema import scan_samples as SCAN_SAMPLES
from healthpipe.sinks.archive.sink import ParquetSink
from healthpipe.sinks.archive.store import Store

value_text = st.one_of(st.floats().map(repr), st.sampled_from(["NaN", "+Inf", "-Inf", "-0", "1_000", " 1", "x", ""]),
                       st.from_regex(r"-?[0-9]{1,20}(\.[0-9]{1,20})?", fullmatch=True))
timestamp = st.one_of(st.integers(1, 2**62), st.sampled_from([0, -1]))


@settings(max_examples=300, deadline=None)
@given(samples=st.lists(st.tuples(timestamp, value_text), max_size=8))
def test_prepare_from_json_text_equals_prepare_from_decoded_samples(tmp_path_factory, samples):
    if SCAN_SAMPLES is None:
        pytest.skip("no compiled hot path here")
    text = SeriesWindow("q", "gauge", {"__name__": "m", "a": "b"}, 0, 1, samples).to_json()
    sink = ParquetSink(ArchiveSettings(target=str(tmp_path_factory.mktemp("a"))),
                       Store(ArchiveSettings(target=str(tmp_path_factory.mktemp("b")))), CollectorRegistry())
    source = [Source("t", 0, 7, b"k", text)]
    fast = sink.prepare([decode(text, scan_samples=SCAN_SAMPLES)], source)
    slow = sink.prepare([decode(text)], source)
    assert fast.samples_in == slow.samples_in and fast.dropped == slow.dropped
    (f,), (s,) = fast.parsed, slow.parsed
    assert f.series == s.series
    assert f.ts.tolist() == s.ts.tolist()
    assert f.values.view(np.int64).tolist() == s.values.view(np.int64).tolist()  # bit for bit, NaN included
    assert (f.nulls is None and s.nulls is None) or f.nulls.tolist() == s.nulls.tolist()
