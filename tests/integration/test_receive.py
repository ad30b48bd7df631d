"""`healthpipe receive` with a real Kafka: remote write 1.0 and 2.0 over HTTP become the producer's messages (same
contract, same key, so a series keeps its partition), 2.0's written-counts are exact, and 100 hostile requests
each get a 4xx with its reason while the receiver keeps serving."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator

import pytest
import requests

from healthpipe.common.messages import SCHEMA_HEADER, SCHEMA_VERSION, decode, series_key
from healthpipe.receive import decode as d
from healthpipe.receive.service import WRITE_PATH, ReceiveService
from tests.support.kafka import read_topic
from tests.unit.test_receive_decode import HOSTILE, V2_TYPE, request_v1, request_v2, snappy

V1_HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
              "X-Prometheus-Remote-Write-Version": "0.1.0"}
V2_HEADERS = {"Content-Type": V2_TYPE, "Content-Encoding": "snappy",
              "X-Prometheus-Remote-Write-Version": "2.0.0"}


@pytest.fixture
def receiver(config) -> Iterator[ReceiveService]:
    from healthpipe.common.kafka import ensure_topics

    ensure_topics(config)
    config.receive.port = 0
    config.receive.ack_timeout_seconds = 20
    service = ReceiveService(config)
    service.initialize()
    thread = threading.Thread(target=service.serve, daemon=True)
    thread.start()
    yield service
    service.stop()
    thread.join(10)
    service.close()


def _url(service: ReceiveService, path: str = WRITE_PATH) -> str:
    return f"http://127.0.0.1:{service.port}{path}"


def _series(n: int, t0: int, points: int) -> list[tuple[dict[str, str], list[tuple[int, float]]]]:
    return [({"__name__": "http_requests_total", "job": "api", "instance": f"host-{i}:9100", "code": "200"},
             [(t0 + 15_000 * k, float(i * 1000 + k) + 0.5) for k in range(points)]) for i in range(n)]


def _published(cfg) -> dict[tuple[str, ...], list[tuple[int, str]]]:
    """The topic's messages as {labels: samples}, checking each is the producer's contract and key."""
    out: dict[tuple[str, ...], list[tuple[int, str]]] = {}
    for msg in read_topic(cfg, cfg.kafka.topic, committed_only=False):
        assert dict(msg.headers())[SCHEMA_HEADER] == str(SCHEMA_VERSION).encode()
        window = decode(msg.value(), msg.headers())  # the consumer's own decode: the contract holds
        assert window.query == cfg.receive.query
        assert msg.key() == series_key(window.query, window.labels)
        out.setdefault(tuple(sorted(window.labels.items())), []).extend(
            (ts, v) for ts, v in window.samples)  # noqa: C416 (pairs from lists)
    return out


def test_both_versions_land_as_the_producers_messages(config, receiver):
    t0 = 1_760_000_000_000
    first, second = _series(20, t0, 4), _series(20, t0 + 60_000, 4)
    answer = requests.post(_url(receiver), data=snappy(request_v1(first)), headers=V1_HEADERS, timeout=30)
    assert answer.status_code == 204, answer.text
    answer = requests.post(_url(receiver), data=snappy(request_v2(second, kind=1)), headers=V2_HEADERS, timeout=30)
    assert answer.status_code == 204, answer.text
    assert answer.headers["X-Prometheus-Remote-Write-Samples-Written"] == "80"
    assert answer.headers["X-Prometheus-Remote-Write-Histograms-Written"] == "0"
    assert answer.headers["X-Prometheus-Remote-Write-Exemplars-Written"] == "0"
    published = _published(config)
    assert len(published) == 20
    for labels, samples in first:
        expected = [(t, d.format_value(v)) for t, v in samples] + \
                   [(t + 60_000, d.format_value(v)) for t, v in samples]
        assert sorted(published[tuple(sorted(labels.items()))]) == expected
    # one series, one partition: both requests' messages of a series share it
    partitions: dict[bytes, set[int]] = {}
    for msg in read_topic(config, config.kafka.topic, committed_only=False):
        partitions.setdefault(msg.key(), set()).add(msg.partition())
    assert all(len(p) == 1 for p in partitions.values()) and len(partitions) == 20


def _hostile_requests(seed: int = 7) -> list[tuple[str, bytes, dict[str, str], int, str]]:
    """100 requests that can never succeed: (name, body, headers, expected status, expected reason)."""
    rng = random.Random(seed)
    out = []
    for name, (body, content_type, reason) in HOSTILE.items():
        status = 413 if reason == "too_large" else 400
        out.append((name, body, {**V1_HEADERS, "Content-Type": content_type}, status, reason))
    while len(out) < 60:  # random garbage and truncations of a good body
        good = snappy(request_v1(_series(3, 1_760_000_000_000, 3)))
        if rng.random() < 0.5:
            body = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 400)))
        else:
            body = good[:rng.randint(1, len(good) - 1)]
        out.append((f"garbage-{len(out)}", body, V1_HEADERS, 0, ""))  # 400, or 413 if its length says huge
    while len(out) < 80:
        out.append((f"content-type-{len(out)}", b"x", {**V1_HEADERS, "Content-Type": rng.choice(
            ["application/json", "text/plain", "application/x-protobuf;proto=x.Y", "application/octet-stream"])},
            415, "unsupported"))
    while len(out) < 90:
        out.append((f"encoding-{len(out)}", snappy(request_v1(_series(1, 1, 1))),
                    {**V1_HEADERS, "Content-Encoding": rng.choice(["gzip", "identity", "zstd"])}, 415, "unsupported"))
    while len(out) < 100:
        out.append((f"oversized-{len(out)}", b"\0" * (2 * 1024 * 1024 + rng.randint(1, 1000)), V1_HEADERS, 413,
                    "too_large"))
    return out


def _rejected(service: ReceiveService) -> Counter:
    counts: Counter = Counter()
    for metric in service.metrics.rejected.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                counts[sample.labels["reason"]] += int(sample.value)
    return counts


def test_a_hundred_hostile_requests_each_get_a_4xx_with_a_reason_and_the_receiver_keeps_serving(config, receiver):
    receiver.cfg.receive.max_body_bytes = 2 * 1024 * 1024
    requests_ = _hostile_requests()
    assert len(requests_) == 100
    for name, body, headers, status, reason in requests_:
        answer = requests.post(_url(receiver), data=body, headers=headers, timeout=30)
        assert answer.status_code == status or (not status and answer.status_code in (400, 413)), \
            (name, answer.status_code, answer.text)
        assert answer.text.strip(), f"{name}: a refusal must say why"
        if reason == "too_large":
            assert "receive.max_" in answer.text, answer.text
    rejected = _rejected(receiver)
    assert sum(rejected.values()) == 100, rejected
    assert rejected["unsupported"] == 30 and rejected["too_large"] >= 10 + 1  # and the snappy bomb
    for name, _, _, _, reason in requests_:
        if reason and reason not in ("unsupported", "too_large"):
            assert rejected[reason] >= 1, (name, reason)
    # still serving, and nothing of the hostile requests reached Kafka
    good = _series(2, 1_760_000_000_000, 2)
    answer = requests.post(_url(receiver), data=snappy(request_v1(good)), headers=V1_HEADERS, timeout=30)
    assert answer.status_code == 204
    assert len(_published(config)) == 2
    assert requests.get(_url(receiver, "/readyz"), timeout=5).status_code == 200
