"""`healthpipe features serve` while Kafka is away for 30 s: the stream store stops moving, `staleness_s` grows and
/readyz says so, every answer is still the truth about the samples held (equal to the answer before the outage,
never a guess); once Kafka is back the store catches up with what was produced since, on its own."""

from __future__ import annotations

import time

import requests

from healthpipe.ml.serve import FeatureServer
from healthpipe.ops import stack
from tests.integration.test_features_stream import caught_up, get, message, stream_config
from tests.support import kafka
from tests.support.pipeline import ConsumerThread, free_port, wait_until


def test_33_features_kafka_down_30s_staleness_grows_answers_stay_true_then_it_catches_up(native):
    with stream_config(native, "fk") as cfg:
        t0 = (int(time.time()) - 300) * 1000
        kafka.produce(cfg, cfg.kafka.topic, [message(f"k{s}", [(t0 + i * 1000, f"{s}.5") for i in range(120)])
                                             for s in range(5)])
        ConsumerThread(cfg, until_idle=3).join()
        server = FeatureServer(cfg, free_port()).start()
        broker = stack.service("kafka")
        try:
            wait_until(lambda: caught_up(cfg, server.port), 60, what="the store caught up")
            # the store is following the topic: a sample produced now reaches it without any consumer
            kafka.produce(cfg, cfg.kafka.topic, [message("k0", [(t0 + 130_000, "99.0")])])
            wait_until(lambda: caught_up(cfg, server.port), 30, what="the new sample read")
            at = t0 + 140_000
            before = get(server.port, query="stream", window="5m", at=at / 1000)
            assert {s["labels"]["instance"]: s["features"]["last"] for s in before["series"]}["k0"] == 99.0
            stack.kill(broker)
            down_at = time.monotonic()
            staleness = []
            while time.monotonic() - down_at < 30:
                during = get(server.port, query="stream", window="5m", at=at / 1000)
                assert during["series"] == before["series"]  # nothing held is lost, nothing made up
                staleness.append(during["freshness"]["staleness_s"])
                time.sleep(2)
            assert staleness[-1] > 25 and staleness == sorted(staleness), staleness
            readyz = requests.get(f"http://127.0.0.1:{server.port}/readyz", timeout=5)
            assert readyz.status_code == 503 and "behind the topic" in readyz.text, readyz.text
        finally:
            stack.start(broker)
        wait_until(lambda: _produced(cfg, t0), 120, what="Kafka back and taking records")
        wait_until(lambda: caught_up(cfg, server.port), 120, what="the store caught up after the outage")
        after = get(server.port, query="stream", window="5m", at=(t0 + 200_000) / 1000)
        assert {s["labels"]["instance"]: s["features"]["last"] for s in after["series"]}["k1"] == -1.0
        assert after["freshness"]["staleness_s"] < 5
        server.stop()


def _produced(cfg, t0: int) -> bool:
    try:
        kafka.produce(cfg, cfg.kafka.topic, [message("k1", [(t0 + 150_000, "-1.0")])])
        return True
    except AssertionError:
        return False
