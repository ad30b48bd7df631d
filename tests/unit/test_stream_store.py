"""The feature server's stream store (healthpipe/ml/stream_store.py) and what the feed puts in it: samples kept as
InfluxDB keeps them, selectors matched as the Flux predicate matches, memory bounded under churn."""

from __future__ import annotations

import random
import time

import msgspec
import pytest

from healthpipe.common.config import HealthpipeConfig, QuerySettings
from healthpipe.common.messages import SeriesWindow
from healthpipe.ml.stream_feed import StreamFeed
from healthpipe.ml.stream_store import SeriesSamples, StreamStore, as_arrays
from healthpipe.schema import series_id, stored_tags
from healthpipe.sinks.influx.transformer import DataTransformer

MIN = 60_000
Q = QuerySettings(name="cpu", promql="node_cpu_seconds", mode="raw", metric_type="gauge")


def tags(instance: str, **extra: str) -> dict[str, str]:
    return {"metric": "cpu", "metric_type": "gauge", "instance": instance, **extra}


def test_samples_are_appended_in_order_and_a_repeated_timestamp_overwrites():
    s = SeriesSamples("x", {})
    s.put([10, 20, 30], [1.0, 2.0, 3.0])
    s.put([40], [4.0])
    s.put([20, 25], [9.0, 2.5])  # a re-delivery and a late sample
    assert list(s.ts) == [10, 20, 25, 30, 40] and list(s.values) == [1.0, 9.0, 2.5, 3.0, 4.0]
    window = s.window(10, 30)
    assert window is not None and (list(window.ts), list(window.values)) == ([20, 25, 30], [9.0, 2.5, 3.0])
    assert window.key == (20, 30, 3, 1)  # (start, end]; the late sample was an insert: version 1
    s.trim(25)
    assert list(s.ts) == [30, 40]


def test_a_selector_matches_as_the_flux_predicate_does():
    store = StreamStore(10 * MIN, 1000)
    store.reset(0)
    rng = random.Random(4)
    everything = []
    for i in range(200):
        t = tags(f"h{i % 20}", zone=f"z{i % 3}") if i % 7 else tags(f"h{i % 20}")  # some lack `zone`
        if i % 11 == 0:
            t["metric_type"] = "counter"  # another query's type: never selected
        if i % 13 == 0:
            t["metric"] = "mem"  # another metric
        sid = series_id(t)
        store.add(sid, t, [1000, 2000], [rng.random(), rng.random()])
        everything.append((sid, t))
    store.filled()
    for labels in ({}, {"instance": "h3"}, {"zone": "z1"}, {"instance": "h4", "zone": "z1"}, {"zone": ""},
                   {"nope": "x"}):
        got = [w.series.series_id for w in store.windows(Q, labels, 0, 5000) or []]
        want = sorted({sid for sid, t in everything if t["metric_type"] == "gauge"
                       and t["metric"] in ("cpu", "node_cpu_seconds")
                       and all(t.get(k) == v for k, v in labels.items())})
        assert got == want, labels


def test_nothing_is_covered_before_the_fill_nor_before_its_start():
    store = StreamStore(10 * MIN, 1000)
    assert store.windows(Q, {}, 0, 1) is None
    store.reset(5 * MIN)
    store.add("a", tags("a"), [4 * MIN, 6 * MIN], [1.0, 2.0])  # the first is older than the fill: not kept
    assert store.windows(Q, {}, 5 * MIN, 7 * MIN) is None  # filling
    store.filled()
    assert store.windows(Q, {}, 5 * MIN - 1, 7 * MIN) is None  # reaches before what the store holds
    [window] = store.windows(Q, {}, 5 * MIN, 7 * MIN)
    assert list(window.ts) == [6 * MIN] and list(window.values) == [2.0]


def test_churn_leaves_nothing_behind_and_the_series_limit_holds():
    span = 5 * MIN
    store = StreamStore(span, max_series=500)
    store.reset(0)
    store.filled()
    live = [f"s{i}" for i in range(300)]
    for minute in range(1, 31):  # 10% of the series replaced every minute
        for k in range(30):
            live[(minute * 30 + k) % 300] = f"s{minute}-{k}"
        store.add_many([(name, tags(name), [minute * MIN], [1.0]) for name in live])
        store.trim()
        assert len(store) <= 500
    assert len(store) <= 300 + 5 * 30  # what the span holds: the live series and the ones replaced within it
    assert store.low_ms == 30 * MIN - span
    tight = StreamStore(span, max_series=100)
    tight.reset(0)
    tight.filled()
    tight.add_many([(f"q{i}", tags(f"q{i}"), [i * 1000 + 1], [1.0]) for i in range(150)])
    assert len(tight) <= 100 and tight.evictions >= 50
    assert tight.windows(Q, {}, 0, 10**9) is None  # windows that needed a pushed-out series are not covered
    assert tight.windows(Q, {}, tight.low_ms, 10**9) is not None


def test_the_feed_keeps_exactly_what_the_consumers_transform_writes():
    cfg = HealthpipeConfig(transform={"valid_metrics": ["cpu"]})
    store = StreamStore(10 * MIN, 1000)
    store.reset(0)
    store.filled()
    feed = StreamFeed(cfg, store)
    now = (int(time.time()) - 60) * 1000
    windows = [
        SeriesWindow("cpu", "gauge", {"__name__": "cpu", "instance": "a b,c", "job": "j"}, 0, 0,
                     [(now, "1.5"), (now + 1000, "NaN"), (now + 2000, "+Inf"), (now + 3000, "2")]),
        SeriesWindow("cpu", "gauge", {"__name__": "cpu", "instance": "x\\"}, 0, 0,
                     [(now, "bad"), (now + 1000, "")]),
        SeriesWindow("cpu", "gauge", {"__name__": "cpu", "instance": "late"}, 0, 0, [(now, "3")]),
        SeriesWindow("mem", "gauge", {"__name__": "mem", "instance": "a"}, 0, 0, [(now, "3")]),  # not allowed
        SeriesWindow("cpu", "gauge", {"__name__": "cpu", "instance": "ahead"}, 0, 0, [(now + 3_600_000, "3")]),
    ]
    feed.apply(windows)
    # the consumer's lines, read independently: what InfluxDB would hold
    lines = DataTransformer(cfg.transform).transform(windows).lines
    assert len(lines) == 3
    held = store.windows(Q, {}, 0, 2 * now) or []
    got = {(w.series.series_id, t, v) for w in held for t, v in zip(w.ts, w.values, strict=True)}
    assert len(store) == 2  # nothing at all of the series whose every sample was dropped
    want = set()
    for w in windows:
        sid = series_id(stored_tags(DataTransformer(cfg.transform).tags(w)))
        prefix = DataTransformer(cfg.transform).prefix_of(w)[0]
        for line in lines:
            if line.startswith(prefix + " "):
                field, stamp = line[len(prefix) + 1:].split(" ")
                want.add((sid, int(stamp), float(field.split("=")[1])))
    assert got == want


def test_as_arrays_lays_the_windows_out_one_after_another():
    store = StreamStore(10 * MIN, 10)
    store.reset(0)
    store.add("a", tags("a"), [1, 2], [1.0, 2.0])
    store.add("b", tags("b"), [3], [3.0])
    store.filled()
    ts, values, lengths = as_arrays(store.windows(Q, {}, 0, 10) or [])
    assert ts.tolist() == [1, 2, 3] and values.tolist() == [1.0, 2.0, 3.0] and lengths.tolist() == [2, 1]
    assert [a.size for a in as_arrays([])] == [0, 0, 0]


@pytest.mark.parametrize("bad", [{"requests": []}, {"requests": [{"query": "cpu", "extra": 1}]}, [],
                                 {"requests": [{"match": {"a-b": "x"}}]}, {"requests": [{"window": "forever"}]}])
def test_a_bad_batch_is_refused_naming_the_request(bad):
    import json

    from healthpipe.common.errors import ConfigError
    from healthpipe.ml.serve import parse_batch

    cfg = HealthpipeConfig(extract={"queries": [Q.model_dump()]})
    with pytest.raises(ConfigError) as e:
        parse_batch(cfg, json.dumps(bad).encode())
    if bad and isinstance(bad, dict) and bad["requests"]:
        assert "requests[0]" in str(e.value)


def test_ten_thousand_series_of_one_selector_stay_within_the_memory_the_docs_give():
    """10,000 label values of one label, 5 minutes at 1 s each (3 M samples): held in compact arrays (16 B a
    sample plus the series' tags and index entries), and a selector over all of them answers from the store."""
    import tracemalloc

    tracemalloc.start()
    store = StreamStore(10 * MIN, 20_000)
    store.reset(0)
    store.filled()
    for first in range(0, 10_000, 500):
        store.add_many([(f"s{s}", tags(f"node-{s}", job="big"), list(range(1000, 301_000, 1000)), [0.5] * 300)
                        for s in range(first, first + 500)])
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert held < 70 * 2**20, f"{held / 2**20:.0f} MB for 3 M samples"  # 48 MB of samples + ~1 KB a series
    windows = store.windows(Q, {"job": "big"}, 0, 301_000)
    assert windows is not None and len(windows) == 10_000 and sum(w.key[2] for w in windows) == 10_000 * 300


def test_the_server_keeps_a_connection_alive_across_posts_and_closes_it_when_a_body_is_left_unread():
    import http.client

    from healthpipe.ml.serve import FeatureServer

    cfg = HealthpipeConfig(extract={"queries": [Q.model_dump()]}, features={"stream": False, "token": "t0ken"})
    server = FeatureServer(cfg, port=0).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        auth = {"Authorization": "Bearer t0ken"}
        for _ in range(3):  # answered (400: no such query), the body read, the connection kept
            conn.request("POST", "/features", body=b'{"requests": [{"query": "nope"}]}', headers=auth)
            answer = conn.getresponse()
            assert answer.status == 400 and b"requests[0]" in answer.read()
            assert answer.getheader("Connection") != "close"
        conn.request("POST", "/features", body=b'{"requests": [{"query": "cpu"}]}')  # no token: body unread
        answer = conn.getresponse()
        answer.read()
        assert answer.status == 401 and answer.getheader("Connection") == "close"
        conn.close()
    finally:
        server.stop()


def test_a_window_seen_before_takes_its_features_from_the_memo_and_any_change_inside_it_recomputes():
    """The memo is keyed by (first ts, last ts, count, version): the same key, the same samples, the same bits;
    an append after the window keeps it, an overwrite or a late sample inside it does not."""
    from healthpipe.ml import features
    from healthpipe.ml.serve import parse_request, stream_features

    cfg = HealthpipeConfig(extract={"queries": [Q.model_dump()]})
    store = StreamStore(10 * MIN, 100)
    store.reset(0)
    store.filled()
    base = 10 * MIN
    for s in range(3):
        store.add(f"s{s}", tags(f"h{s}"), list(range(base + 1000, base + 61_000, 1000)),
                  [float(s * 100 + i) for i in range(60)])

    def answer(at: int) -> list[dict]:
        (series,) = stream_features(cfg, store, [parse_request(cfg, "cpu", {}, "30s", str(at / 1000))])
        return [msgspec.json.decode(s) for s in series or []]

    def fresh(at: int) -> list[dict]:  # computed from the samples alone, no memo
        out = []
        for w in sorted(store._series.values(), key=lambda x: x.series_id):
            ts, vs = np.array(w.ts), np.array(w.values)
            cut = features.window_slice(ts, at, 30_000)
            out.append(features.compute(ts[cut], vs[cut], at))
        return out

    import numpy as np

    at = base + 40_500
    first = answer(at)
    assert all(s.memo is not None for s in store._series.values())
    again = answer(at + 200)  # the same samples (no sample between 40.5 s and 40.7 s): from the memo
    assert [a["features"] for a in again] == [{**f, "staleness_s": f["staleness_s"]} for f in fresh(at + 200)]
    assert [a["features"]["mean"] for a in again] == [a["features"]["mean"] for a in first]
    store.add("s1", tags("h1"), [base + 30_000], [-1e6])  # an overwrite inside the window: recomputed
    assert [a["features"] for a in answer(at + 200)] == fresh(at + 200)
    store.add("s2", tags("h2"), [base + 35_500], [7.0])  # a late sample inside the window: recomputed
    assert [a["features"] for a in answer(at + 200)] == fresh(at + 200)
    assert answer(at + 200)[1]["features"]["min"] == -1e6


def test_an_answer_reuses_a_series_encoding_only_while_its_window_and_query_are_the_same():
    """Each series' entry is JSON encoded once per window (stream_features): the next request with the same
    samples writes only a new staleness_s. A single sample's slope (NaN) is null, the query named is the one asked,
    and the bytes decode to what the dict would have been."""
    from healthpipe.ml.serve import parse_request, stream_features

    other = Q.model_copy(update={"name": "cpu_again"})  # two queries over the same metric: one series, two heads
    cfg = HealthpipeConfig(extract={"queries": [Q.model_dump(), other.model_dump()]})
    store = StreamStore(10 * MIN, 100)
    store.reset(0)
    store.filled()
    held = {"metric": "node_cpu_seconds", "metric_type": "gauge", "instance": "h0"}  # what both queries select
    store.add("s0", held, [MIN], [1.5])

    def answer(query: str, at: int) -> dict:
        ((raw,),) = stream_features(cfg, store, [parse_request(cfg, query, {}, "30s", str(at / 1000))])
        return msgspec.json.decode(raw)

    first = answer("cpu", MIN + 1000)
    assert first == {"series_id": "s0", "query": "cpu", "metric": "node_cpu_seconds", "metric_type": "gauge",
                     "labels": {"instance": "h0"},
                     "features": {"last": 1.5, "mean": 1.5, "min": 1.5, "max": 1.5, "stddev": 0.0, "slope": None,
                                  "count": 1, "staleness_s": 1.0}}
    assert answer("cpu", MIN + 2500)["features"]["staleness_s"] == 2.5  # the same window: only staleness moves
    assert answer("cpu_again", MIN + 2500)["query"] == "cpu_again"
    store.add("s0", held, [MIN + 2000], [3.5])
    assert answer("cpu", MIN + 2500)["features"] == {"last": 3.5, "mean": 2.5, "min": 1.5, "max": 3.5, "stddev": 1.0,
                                                     "slope": 1.0, "count": 2, "staleness_s": 0.5}
