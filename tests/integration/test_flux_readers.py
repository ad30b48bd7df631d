"""The two readers of Flux's CSV answer agree on real InfluxDB: `read_series` (Python's csv module and numpy, what the
feature server fills its store with, without pandas or pyarrow) returns exactly the points `read_frame` (pyarrow,
what the export and verify read) does, series by series — with tag values that CSV must quote, series with other tag
keys (Flux then answers in several blocks, each with a header of its own), and timestamps with and without a
fraction of a second."""

import pandas as pd
import pytest
from influxdb_client.client.write_api import SYNCHRONOUS

from healthpipe.common.flux import read_frame, read_frames, read_series
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


def test_read_frames_streams_the_answer_in_frames_of_whole_series(services):
    """The export's reader: an answer of 60,000 points over 20,000 series (several of pyarrow's 1 MiB blocks)
    comes in frames of about `rows` rows, every series whole in exactly one frame, the union exactly read_frame's
    points. A cut in the wrong place splits a series across two frames, and the export then puts it on the grid
    twice (duplicate rows)."""
    series, points = 20_000, 3
    lines = [f"m,instance=node-{s},zone=z{s % 7}{',job=j' if s % 3 else ''} value={s + k / 4!r} {T0 + 1_000 * k}"
             for s in range(series) for k in range(points)]
    with influx.temporary_bucket(services.config().load.influxdb, "readers") as s, influx.client(s) as c:
        write = c.write_api(write_options=SYNCHRONOUS)
        for i in range(0, len(lines), 10_000):
            write.write(s.bucket, s.org, "\n".join(lines[i:i + 10_000]), write_precision="ms")
        predicate = 'r._measurement == "m" and r._field == "value"'
        whole = read_frame(s, predicate, T0 - 1, T0 + 10_000)
        frames = list(read_frames(s, predicate, T0 - 1, T0 + 10_000, rows=8_000))

    assert len(whole) == series * points
    assert len(frames) > 3
    assert sum(len(f) for f in frames) == len(whole)
    seen: dict[str, int] = {}
    for i, frame in enumerate(frames):
        for instance, count in frame["instance"].astype(str).value_counts().items():
            assert instance not in seen, f"{instance} in frames {seen[instance]} and {i}"
            assert count == points, f"{instance}: {count} of its {points} points in frame {i}"
            seen[instance] = i
    assert len(seen) == series

    def rows(frame):
        out = frame.astype({c: str for c in frame.columns if c not in ("ts", "value")})
        return sorted(out[["instance", "zone", "job", "ts", "value"]].itertuples(index=False, name=None))

    assert rows(pd.concat(frames, ignore_index=True)) == rows(whole)


def test_read_frames_of_an_empty_range_is_no_frame(services):
    with influx.temporary_bucket(services.config().load.influxdb, "readers") as s:
        assert list(read_frames(s, 'r._measurement == "m"', T0 - 1, T0 + 10_000, rows=10)) == []
