"""`healthpipe receive` while Kafka is away: a request whose records librdkafka holds, unacknowledged, is answered
503 with Retry-After (never 2xx), /readyz says why; once Kafka is back the retried request (what Prometheus does)
is answered 204 and the topic holds every sample of every request, a retry's repeats being the same points."""

from __future__ import annotations

import threading
import time

import requests

from healthpipe.common.kafka import ensure_topics
from healthpipe.ops import stack
from healthpipe.receive.decode import format_value
from healthpipe.receive.service import ReceiveService
from tests.integration.test_receive import V1_HEADERS, _published, _series, _url
from tests.support.pipeline import wait_until
from tests.unit.test_receive_decode import request_v1, snappy


def test_28_receive_answers_503_while_kafka_is_down_and_loses_nothing(native):
    cfg = native.config()
    ensure_topics(cfg)
    cfg.receive.port = 0
    cfg.receive.ack_timeout_seconds = 8
    service = ReceiveService(cfg)
    service.initialize()
    threading.Thread(target=service.serve, daemon=True).start()
    broker = stack.service("kafka")
    t0 = int(time.time() * 1000) - 600_000
    before, during = _series(30, t0, 5), _series(30, t0 + 300_000, 5)
    try:
        assert requests.post(_url(service), data=snappy(request_v1(before)), headers=V1_HEADERS,
                             timeout=30).status_code == 204
        stack.kill(broker)
        answers: list[requests.Response] = []
        sending = threading.Thread(target=lambda: answers.append(requests.post(
            _url(service), data=snappy(request_v1(during)), headers=V1_HEADERS, timeout=60)))
        sending.start()
        # the fault hits the request in flight: its records sit in librdkafka's queue, unacknowledged
        wait_until(lambda: len(service.producer) > 0, 10, interval=0.01, what="the request's records queued")
        assert sending.is_alive(), "answered while its records were unacknowledged"
        sending.join(60)
        answer = answers[0]
        assert answer.status_code == 503, (answer.status_code, answer.text)
        assert answer.headers["Retry-After"] == str(cfg.receive.retry_after_seconds)
        assert "acknowledged" in answer.text
        readyz = requests.get(_url(service, "/readyz"), timeout=5)
        assert readyz.status_code == 503 and "Kafka" in readyz.text, readyz.text
    finally:
        stack.start(broker)
    # Prometheus retries a 5xx: so does this, until Kafka takes it
    deadline = time.monotonic() + 180
    while True:
        status = requests.post(_url(service), data=snappy(request_v1(during)), headers=V1_HEADERS,
                               timeout=60).status_code
        if status == 204 or time.monotonic() > deadline:
            break
        time.sleep(cfg.receive.retry_after_seconds)
    assert status == 204
    assert requests.get(_url(service, "/readyz"), timeout=5).status_code == 200
    service.stop()
    service.close()
    expected: dict[tuple[str, ...], set[tuple[int, str]]] = {}
    for labels, samples in before + during:  # the same 30 series in both requests, later timestamps
        expected.setdefault(tuple(sorted(labels.items())), set()).update((t, format_value(v)) for t, v in samples)
    published = _published(cfg)
    assert {k: set(v) for k, v in published.items()} == expected  # every sample, and nothing that was not sent
