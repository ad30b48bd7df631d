import time

from hypothesis import given
from hypothesis import strategies as st

from healthpipe.common.config import TransformSettings
from healthpipe.common.messages import SeriesWindow
from healthpipe.schema import escape_tag, representable, tag_set
from healthpipe.sinks.influx.transformer import DataTransformer

NOW_MS = 1_800_000_000_000


def transformer(**settings):
    return DataTransformer(TransformSettings(**settings), clock=lambda: NOW_MS / 1000)


def w(samples, query="availability", **labels):
    return SeriesWindow(query, "availability", {"__name__": "up", "job": "test-app", "instance": "h:1", **labels},
                        0, NOW_MS, samples)


def test_every_drop_is_counted_by_reason():
    t = NOW_MS - 5000
    batch = [w([(t, "1"), (t, "1"), (t + 1, "NaN"), (t + 2, "+Inf"), (t + 3, "-Inf"), (0, "1"), (-7, "1"),
                ("abc", "1"), (1.5, "1"), (NOW_MS + 3_600_000, "1"), (t + 4, None), (t + 5, ""),
                (t + 6, "twelve"), (t + 7, "0.25")]),
             SeriesWindow("q", "gauge", {"__name__": "not_whitelisted"}, 0, NOW_MS, [(t, "1")])]
    result = transformer().transform(batch)
    assert result.samples_in == 15
    assert dict(result.dropped) == {"duplicate": 1, "nan": 1, "inf": 2, "bad_timestamp": 4, "future_timestamp": 1,
                                    "null": 2, "not_a_number": 1, "metric_not_allowed": 1}
    assert result.samples_out + sum(result.dropped.values()) == result.samples_in
    prefix = "health_metrics,instance=h:1,job=test-app,metric=up,metric_type=availability,service=test-app"
    assert result.lines == [f"{prefix} value=1.0 {t}", f"{prefix} value=0.25 {t + 7}"]


def test_tags_service_label_wins_over_job_and_query_name_names_computed_series():
    tr = transformer(valid_metrics=[])
    labels = {"job": "j", "service": "checkout", "path": "/x"}
    tags = tr.tags(SeriesWindow("error_rate", "error_rate", labels, 0, 1, []))
    assert tags == {"metric": "error_rate", "metric_type": "error_rate", "service": "checkout", "job": "j",
                    "path": "/x"}


def test_labels_colliding_with_our_tags_are_renamed():
    tags = transformer().tags(w([], metric="m", _field="f", time="t"))
    assert tags["metric"] == "up" and tags["label_metric"] == "m"
    assert tags["label__field"] == "f" and tags["label_time"] == "t"


def test_include_exclude_labels():
    tr = transformer(include_labels=["path"], exclude_labels=["path"])
    assert "path" not in tr.tags(w([], path="/a", method="GET"))
    assert "method" not in tr.tags(w([], path="/a", method="GET"))


def test_same_sample_always_same_line():
    a = transformer().transform([w([(NOW_MS - 1, "3")], b="2", a="1")]).lines
    b = transformer().transform([w([(NOW_MS - 1, "3")], a="1", b="2")]).lines
    assert a == b


def test_tag_strings_cached_for_a_bounded_number_of_series():
    tr = transformer(series_cache_size=3)
    batch = [w([(NOW_MS - 1, "1")], instance=f"h:{i}") for i in range(5)]
    first = tr.transform(batch).lines
    assert len(tr.prefix_cache) == 3
    assert tr.transform(batch).lines == first == [
        f"health_metrics,instance=h:{i},job=test-app,metric=up,metric_type=availability,service=test-app "
        f"value=1.0 {NOW_MS - 1}" for i in range(5)]


@given(st.text())
def test_a_label_value_cannot_add_a_point_tag_or_field(value):
    escaped = escape_tag(value)
    assert "\n" not in escaped and "\r" not in escaped
    # Every separator that survives is escaped, and no backslash escapes our own separator.
    i = 0
    while i < len(escaped):
        if escaped[i] == "\\":
            i += 2
            continue
        assert escaped[i] not in ", =", (value, escaped)
        i += 1
    assert not escaped.endswith("\\") or escaped.endswith(("\\,", "\\=", "\\ "))


def test_representable_rule():
    assert representable("a\nb\rc") == "a\u2424b\u240dc"
    assert representable("trailing\\") == "trailing\u29f5"
    assert representable("a\\,b") == "a\u29f5,b"
    assert representable("a\\b") == "a\\b"
    assert tag_set([("k", ""), ("a", "x y")]) == "a=x\\ y"


def test_timestamps_in_the_near_future_are_fine():
    now = time.time()
    tr = DataTransformer(TransformSettings(max_future_skew_seconds=60), clock=lambda: now)
    res = tr.transform([w([(int(now * 1000) + 30_000, "1"), (int(now * 1000) + 90_000, "1")])])
    assert res.samples_out == 1 and res.dropped == {"future_timestamp": 1}


def test_labels_that_would_collide_land_on_distinct_tags():
    """`metric` is ours, so the label becomes label_metric; a label already named label_metric must not
    overwrite it: it becomes label_label_metric. The renaming is one-to-one."""
    from healthpipe.schema import tag_key

    tags = transformer().tags(w([], metric="from-label", label_metric="other", label_x="y", _hidden="h"))
    assert tags["metric"] == "up"
    assert tags["label_metric"] == "from-label"
    assert tags["label_label_metric"] == "other"
    assert tags["label_label_x"] == "y" and tags["label__hidden"] == "h"
    names = ["metric", "label_metric", "label_label_metric", "x", "label_x", "_x", "value", "time"]
    assert len({tag_key(n) for n in names}) == len(names)
