"""The feature server's stream store against the real stack: fresher than InfluxDB, and once the consumer has
written the same samples, bit-equal to the training export, through late, re-delivered, backfilled, dropped and
malformed input; complete again after a kill -9 (healthpipe/ml/stream_feed.py)."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
import requests

from healthpipe.common.config import HealthpipeConfig
from healthpipe.common.kafka import ensure_topics
from healthpipe.common.messages import SeriesWindow, headers
from healthpipe.ml.export import export
from healthpipe.ml.serve import FeatureServer
from tests.support import influx, kafka
from tests.support.pipeline import ConsumerThread, free_port, start_process, wait_until, write_config

QUERY = {"name": "stream", "promql": "stream_metric", "mode": "raw", "metric_type": "gauge"}
N_SERIES = 12


def message(instance: str, samples: list[tuple[int, str]], metric: str = "stream_metric") -> tuple:
    w = SeriesWindow("stream", "gauge", {"__name__": metric, "job": "fs", "instance": instance},
                     samples[0][0] - 1, samples[-1][0], samples)
    return w.key, w.to_json(), headers()


@contextmanager
def stream_config(services, prefix: str) -> Iterator[HealthpipeConfig]:
    """A config on a bucket and topics of their own, for QUERY's series, the feature server's store 30 min long
    and /readyz failing after 5 s behind the topic."""
    with influx.temporary_bucket(services.config().load.influxdb, prefix) as bucket:
        cfg = services.config(extract={"queries": [QUERY]}, influxdb={"bucket": bucket.bucket},
                              transform={"valid_metrics": ["stream_metric"]},
                              features={"stream_span": "30m", "max_staleness_seconds": 5})
        ensure_topics(cfg)
        yield cfg


@pytest.fixture(scope="module")
def stream(services):
    """A bucket and topic of their own; the first 200 s of N_SERIES series already consumed into InfluxDB, and a
    list (in `later`) of what arrives after the server has started: (cfg, t0, messages for later, expected)."""
    with stream_config(services, "fs") as cfg:
        t0 = (int(time.time()) - 420) * 1000
        rng = random.Random(7)
        held: dict[tuple[str, int], float] = {}  # (instance, ts) → value: what InfluxDB will hold in the end

        def samples(s: int, lo: int, hi: int) -> list[tuple[int, str]]:
            out = []
            for i in range(lo, hi):
                v = round(rng.gauss(50, 10), 3)
                held[(f"h{s}", t0 + i * 1000)] = v
                out.append((t0 + i * 1000, repr(v)))
            return out

        kafka.produce(cfg, cfg.kafka.topic, [message(f"h{s}", samples(s, 0, 200)) for s in range(N_SERIES)])
        ConsumerThread(cfg, until_idle=3).join()
        later = [message(f"h{s}", samples(s, 200, 380)) for s in range(N_SERIES)]
        late = t0 + 250_500  # a little late, between two samples already sent
        backfill = t0 + 20_500  # long after its time: older than anything the server will have read from Kafka
        later += [message("h0", [(late, "7.25")]), message("h3", [(backfill, "-3.5")]),
                  later[1],  # a re-delivery: same samples, same values
                  message("h2", [(t0 + 380_000, "NaN"), (t0 + 381_000, "4.5")]),  # NaN: dropped by the consumer
                  message("h4", [(t0 + 300_000, "9")], metric="not_allowed"),  # metric not allowed: dropped
                  (b"junk", b"{not json", None)]  # dead-lettered by the consumer, skipped by the server
        held.update({("h0", late): 7.25, ("h3", backfill): -3.5, ("h2", t0 + 381_000): 4.5})
        yield cfg, t0, later, held


def get(port: int, **params) -> dict:
    answer = requests.get(f"http://127.0.0.1:{port}/features", params=params, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def caught_up(cfg, port: int) -> bool:
    fresh = get(port, query="stream", window="1s")["freshness"]
    ends = kafka.end_offsets(cfg, cfg.kafka.topic)
    return fresh["source"] == "stream" and all(fresh["offsets"].get(str(p), 0) >= e for p, e in ends.items()) \
        and requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200


def exported_features(cfg, t: int, tmp_path) -> pd.DataFrame:
    out = tmp_path / f"f{t}"
    export(cfg, cfg.select_queries(["stream"]), t - 1000, t, out, step_ms=1000, as_of_ms=t, feature_window_ms=300_000,
           progress=False, overwrite=True)
    frame = pd.read_parquet(out / "data")
    return frame[frame["ts"] == pd.Timestamp(t, unit="ms", tz="UTC")]


def assert_bit_equal(served: dict, exported: pd.DataFrame, t: int) -> int:
    assert served["series"] and len(served["series"]) == len(exported), (t, len(served["series"]), len(exported))
    compared = 0
    for s in served["series"]:
        row = exported[exported["series_id"] == s["series_id"]].iloc[0]
        for name, value in s["features"].items():
            assert (np.isnan(row[name]) if value is None else value == row[name]), (t, s["series_id"], name)
            compared += 1
    return compared


def test_the_stream_is_fresher_than_influxdb_and_then_bit_equal_to_the_export(stream, tmp_path):
    cfg, t0, later, held = stream
    server = FeatureServer(cfg, free_port()).start()
    plain = FeatureServer(cfg.model_copy(update={"features": cfg.features.model_copy(update={"stream": False})}),
                          free_port()).start()
    try:
        wait_until(lambda: caught_up(cfg, server.port), 60, what="the stream store filled and caught up")
        kafka.produce(cfg, cfg.kafka.topic, later)
        wait_until(lambda: caught_up(cfg, server.port), 60, what="the stream store read what was produced")
        at = t0 + 381_000
        served = get(server.port, query="stream", window="10m", at=at / 1000)
        assert served["freshness"]["source"] == "stream" and served["freshness"]["staleness_s"] < 5
        counts = {s["labels"]["instance"]: s["features"]["count"] for s in served["series"]}
        # exactly what the consumer will write, before it has written any of it
        want = {f"h{s}": sum(1 for (i, ts) in held if i == f"h{s}" and at - 600_000 < ts <= at)
                for s in range(N_SERIES)}
        assert counts == want
        from_influx = get(plain.port, query="stream", window="10m", at=at / 1000)
        assert from_influx["freshness"]["source"] == "influxdb"
        assert sum(s["features"]["count"] for s in from_influx["series"]) < sum(want.values())

        ConsumerThread(cfg, until_idle=3).join()  # now InfluxDB holds them too
        rng = random.Random(3)
        instants = sorted((rng.randrange(t0 + 240_000, t0 + 382_000) // 1000) * 1000 for _ in range(20))
        instants[0] = t0 + 251_000  # just after the late sample
        compared = 0
        for t in instants:
            served = get(server.port, query="stream", window="5m", at=t / 1000)
            assert served["freshness"]["source"] == "stream"
            compared += assert_bit_equal(served, exported_features(cfg, t, tmp_path), t)
        assert compared >= 20 * N_SERIES * 8
        # the same instants in one POST: the same answers
        batch = requests.post(f"http://127.0.0.1:{server.port}/features", timeout=30, json={
            "requests": [{"query": "stream", "window": "5m", "at": t / 1000} for t in instants]}).json()
        for t, answer in zip(instants, batch["results"], strict=True):
            assert answer["series"] == get(server.port, query="stream", window="5m", at=t / 1000)["series"]
        assert get(server.port, query="stream", window="5m", at=t0 / 1000 - 3600)["freshness"]["source"] == "influxdb"
    finally:
        server.stop()
        plain.stop()


def test_after_a_kill_9_the_server_refills_from_influxdb_and_the_topic_and_answers_the_same(stream, tmp_path):
    """Samples only the topic has (no consumer ran since they were produced) are in the answer before the kill,
    lost with the process, and in the answer again after the restart: read again from the topic."""
    cfg, t0, _, _ = stream
    port = free_port()
    config_file = write_config(cfg, tmp_path / "features.yaml")
    at = t0 + 395_000

    def start():
        proc = start_process("features", config_file, cfg, "serve", "--port", str(port), log=tmp_path / "f.log")
        started = time.monotonic()
        wait_until(lambda: _ready(port) and caught_up(cfg, port), 120, what="/readyz and caught up after start")
        return proc, time.monotonic() - started

    proc, first_start = start()
    try:
        kafka.produce(cfg, cfg.kafka.topic, [message(f"h{s}", [(t0 + 390_000 + i * 1000, "1.0") for i in range(5)])
                                             for s in range(N_SERIES)])
        wait_until(lambda: caught_up(cfg, port), 60, what="the new samples read")
        before = get(port, query="stream", window="5m", at=at / 1000)
        assert before["freshness"]["source"] == "stream"
        assert all(s["features"]["last"] == 1.0 and s["features"]["staleness_s"] == 1.0 for s in before["series"])
        assert not influx.points(cfg.load.influxdb, 'r.metric == "stream_metric"', start=influx.iso(t0 + 390_000),
                                 stop=influx.iso(t0 + 400_000))  # only the topic and the server's memory have them
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        proc, refill = start()
        after = get(port, query="stream", window="5m", at=at / 1000)
        assert after["freshness"]["source"] == "stream" and after["series"] == before["series"]
        print(f"features serve: ready and caught up {first_start:.1f}s after start, {refill:.1f}s after kill -9")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def _ready(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_under_a_delivery_every_half_second_the_store_stays_ready_and_fresh(stream):
    """Live ingest: /readyz stays 200 and each delivery is in an answer within a second of being sent (the
    freshness check once asked each partition through the busy reading consumer and never found it caught up)."""
    import threading

    cfg, t0, _, _ = stream
    server = FeatureServer(cfg, free_port()).start()
    stop = threading.Event()
    sent: list[tuple[int, float]] = []  # (sample timestamp, wall time it was on the topic)

    def deliver() -> None:
        i = 0
        while not stop.is_set():
            ts = t0 + 500_000 + i * 500
            kafka.produce(cfg, cfg.kafka.topic, [message(f"h{s}", [(ts, f"{i}.0")]) for s in range(N_SERIES)])
            sent.append((ts, time.time()))
            i += 1
            stop.wait(0.5)

    try:
        wait_until(lambda: caught_up(cfg, server.port), 60, what="the store filled and caught up")
        delivery = threading.Thread(target=deliver, daemon=True)
        delivery.start()
        ready, lags = [], []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ready.append(requests.get(f"http://127.0.0.1:{server.port}/readyz", timeout=5).status_code == 200)
            if sent:
                ts, at_wall = sent[-1]
                answer = get(server.port, **{"query": "stream", "match[instance]": "h0", "window": "10s",
                                             "at": ts / 1000})
                if answer["series"] and answer["series"][0]["features"]["staleness_s"] == 0.0:
                    lags.append(time.time() - at_wall)
            time.sleep(0.1)
        stop.set()
        delivery.join(10)
        assert sum(ready) >= 0.9 * len(ready), f"/readyz 200 in {sum(ready)} of {len(ready)} asks"
        assert lags and max(lags) < 1.5, lags
    finally:
        stop.set()
        server.stop()
