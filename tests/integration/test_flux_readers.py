"""The two readers of Flux's CSV answer agree on real InfluxDB: `read_series` (Python's csv module and numpy, what the
feature server fills its store with, without pandas or pyarrow) returns exactly the points `read_frame` (pyarrow,
what the export and verify read) does, series by series — with tag values that CSV must quote, series with other tag
keys (Flux then answers in several blocks, each with a header of its own), and timestamps with and without a
fraction of a second."""

import pytest
from influxdb_client.client.write_api import SYNCHRONOUS

from healthpipe.common.flux import read_frame, read_series
from healthpipe.schema import escape_tag, representable
from tests.integration.test_flux_quoting import TAG_VALUES
from tests.support import influx

pytestmark = pytest.mark.integration

T0 = 1_790_000_000_000


def test_read_series_returns_what_read_frame_does_series_by_series(services):
    lines, want = [], {}
    for i, v in enumerate(TAG_VALUES):
        tags = {"instance": representable(v), "job": "j"} if i % 3 else {"instance": representable(v), "zone": f"z{i}"}
        stamps = [T0 + 1_000 * k + (k * 37) % 1000 for k in range(5)]  # whole seconds and fractions of one
        values = [i + k / 3 for k in range(5)]
        tag_text = ",".join(f"{k}={escape_tag(tv)}" for k, tv in sorted(tags.items()))
        lines += [f"m,{tag_text} value={x!r} {t}" for t, x in zip(stamps, values, strict=True)]
        want[tuple(sorted(tags.items()))] = (stamps, values)
    with influx.temporary_bucket(services.config().load.influxdb, "readers") as s, influx.client(s) as c:
        c.write_api(write_options=SYNCHRONOUS).write(s.bucket, s.org, "\n".join(lines), write_precision="ms")
        predicate = 'r._measurement == "m" and r._field == "value"'
        series = read_series(s, predicate, T0 - 1, T0 + 10_000)
        frame = read_frame(s, predicate, T0 - 1, T0 + 10_000)

    got = {tuple(sorted(tags.items())): (ts.tolist(), values.tolist()) for tags, ts, values in series}
    assert len(series) == len(want)  # one entry per series, none split
    assert got == want
    tag_columns = [c for c in frame.columns if c not in ("ts", "value")]
    from_frame = {}
    for key, rows in frame.groupby(tag_columns, observed=True):
        tags = tuple(sorted((k, str(v)) for k, v in zip(tag_columns, key, strict=True) if str(v) != ""))
        rows = rows.sort_values("ts")
        from_frame[tags] = (rows["ts"].tolist(), rows["value"].tolist())
    assert from_frame == got
