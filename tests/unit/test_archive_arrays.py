"""healthpipe/sinks/archive/arrays.py builds the arrays `pa.array()` would (so the Parquet files are the same
bytes), and the archiver's write path never imports pandas (what the module is for)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from healthpipe.sinks.archive import arrays


@settings(max_examples=200, deadline=None)
@given(values=hnp.arrays(np.float64, st.integers(0, 40), elements=st.floats(allow_nan=True, allow_infinity=True)),
       data=st.data())
def test_numeric_is_pa_array_bit_for_bit_nulls_included(values, data):
    nulls = data.draw(hnp.arrays(np.bool_, len(values)))
    ours, theirs = arrays.numeric(values, pa.float64(), nulls), pa.array(values, pa.float64(), mask=nulls)
    assert ours.null_count == theirs.null_count
    assert ours.is_null().to_pylist() == theirs.is_null().to_pylist()
    valid = ~nulls
    assert (ours.to_numpy(zero_copy_only=False)[valid].view(np.int64).tolist() ==
            values[valid].view(np.int64).tolist())  # NaN payloads and -0.0 kept
    ts = (np.abs(values.view(np.int64)) % 2**62)
    assert arrays.numeric(ts, pa.timestamp("ms", tz="UTC")).equals(pa.array(ts, pa.timestamp("ms", tz="UTC")))
    assert arrays.numeric(ts.astype(np.int32), pa.int32()).equals(pa.array(ts.astype(np.int32), pa.int32()))


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.text(st.characters(blacklist_categories=("Cs",)))))
def test_strings_is_pa_array(texts):
    assert arrays.strings(texts).equals(pa.array(texts, pa.string()))


def test_archiving_a_batch_never_imports_pandas(tmp_path):
    """pa.array() imports pandas on its first call (~0.3 CPU-s on the builder thread, with the GIL held)."""
    script = textwrap.dedent(f"""
        import sys
        from prometheus_client import CollectorRegistry
        from healthpipe.sinks.archive.sink import ParquetSink
        from healthpipe.sinks.archive.store import Store
        from healthpipe.common.config import ArchiveSettings
        from healthpipe.common.messages import SeriesWindow, decode
        from healthpipe.common.records import Source
        from healthpipe.schema import scan_samples as SCAN_SAMPLES

        settings = ArchiveSettings(target={str(tmp_path)!r})
        sink = ParquetSink(settings, Store(settings), CollectorRegistry())
        samples = [(1_700_000_000_000, "1.5"), (1_700_000_001_000, "NaN"), (1_700_000_002_000, "x")]
        text = SeriesWindow("q", "gauge", {{"__name__": "m", "a": "b"}}, 0, 1, samples).to_json()
        sink.assigned({{("t", 0): -1}})
        sink.write(sink.prepare([decode(text, scan_samples=SCAN_SAMPLES)], [Source("t", 0, 0, b"k", text)]))
        assert sink.flush() == {{("t", 0): 1}}, sink.durable()
        assert "pandas" not in sys.modules, "the archiver imported pandas"
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.rglob("*.parquet")), "no file written"
