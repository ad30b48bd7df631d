"""Label values round-trip exactly through a real InfluxDB, under the documented rule for what it cannot
represent (healthpipe/schema/__init__.py), and never add a point, a tag or a field."""

from __future__ import annotations

import time
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthpipe.schema import representable, series_prefix
from healthpipe.sinks.influx.loader import InfluxDBLoader
from tests.support import influx

HOSTILE = st.sampled_from(["\n", "\r", ",", "=", " ", '"', "\\", "\t", "'", "ü", "✓", "🙂", "#"])
PIECES = st.one_of(HOSTILE, st.characters(blacklist_categories=("Cs",)), st.just(" value=1 1\nx,a=b c=2"))
LABEL_VALUES = st.lists(st.lists(PIECES, min_size=1, max_size=12).map("".join), min_size=1, max_size=40)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=LABEL_VALUES)
def test_label_values_round_trip_exactly(config, values):
    run = uuid.uuid4().hex
    t0 = int(time.time() * 1000) - 60_000
    lines = [f"{series_prefix([('run', run), ('i', str(i)), ('label', v)])} value={float(i)} {t0 + i}"
             for i, v in enumerate(values)]
    loader = InfluxDBLoader(config.load.influxdb)
    result = loader.write(lines)
    loader.close()
    expected = {i: representable(v) for i, v in enumerate(values) if representable(v)}
    # empty after the rule: the tag is left out, the point is still written
    assert result.written == len(values) and not result.rejected
    rows = influx.points(config.load.influxdb, f'r.run == "{run}"', start="-1h")
    assert len(rows) == len(values)  # no injected points
    tags = {k for r in rows for k in r} - {"result", "table", "_start", "_stop", "_time", "_value", "_field",
                                           "_measurement"}
    assert tags <= {"run", "i", "label"}  # no injected tags
    assert {r["_field"] for r in rows} == {"value"}  # no injected fields
    got = {int(r["i"]): r.get("label") for r in rows}
    assert {i: got[i] for i in expected} == expected
    assert all(got[i] is None for i in got if i not in expected)
