"""A real Prometheus 3 remote-writing (2.0) through two faults: Kafka gone for 30 s (Prometheus' requests answered
503 meanwhile, retried after), and the receiver killed -9 with requests in flight (their records unacknowledged
because Kafka is frozen at that moment). Afterwards InfluxDB equals Prometheus 3's query API: nothing lost,
nothing doubled (a retried request's repeats are the same points)."""

from __future__ import annotations

import os
import signal
import threading
import time

import requests

from healthpipe.ops import stack
from healthpipe.ops.stack.prometheus3 import V2
from healthpipe.receive.service import ReceiveService
from tests.integration.test_receive_prometheus3 import pushed_config, stored_up_to, verify_exact
from tests.support.pipeline import ConsumerThread, start_process, wait_until, write_config
from tests.support.prometheus3 import Prometheus3


def _metric(port: int, name: str) -> float:
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except requests.RequestException:
        return 0.0
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def _ready(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_29_kafka_down_30s_while_prometheus3_writes_loses_nothing(native, tmp_path):
    cfg = pushed_config(native)
    receiver = ReceiveService(cfg)
    receiver.initialize()
    threading.Thread(target=receiver.serve, daemon=True).start()
    consumer = ConsumerThread(cfg)
    started_ms = int(time.time() * 1000)
    prometheus = Prometheus3(tmp_path, receiver.port, V2)
    broker = stack.service("kafka")
    refused = lambda: receiver.metrics.registry.get_sample_value(  # noqa: E731
        "healthpipe_receive_requests_total", {"code": "503", "message": f"application/x-protobuf;proto={V2}"}) or 0
    try:
        wait_until(lambda: receiver.metrics.registry.get_sample_value("healthpipe_receive_samples_total") > 200, 60,
                   what="samples flowing")
        stack.kill(broker)
        down_at = time.monotonic()
        # the fault hits requests in flight: Prometheus' pushes are answered 503 while Kafka is away
        wait_until(lambda: refused() >= 1, 40, what="a push answered 503")
        time.sleep(max(0.0, 30 - (time.monotonic() - down_at)))
    finally:
        stack.start(broker)
    try:
        assert prometheus.value("prometheus_remote_storage_samples_retried_total") > 0  # it retried, as it should
        end_ms = stored_up_to(cfg, prometheus, timeout=240)
        assert prometheus.value("prometheus_remote_storage_samples_failed_total") == 0
        verify_exact(cfg, prometheus, started_ms, end_ms)
    finally:
        prometheus.stop()
        consumer.stop()
        receiver.stop()
        receiver.close()


def test_30_receiver_killed_9_with_requests_in_flight_loses_nothing(native, tmp_path):
    cfg = pushed_config(native)
    config_file = write_config(cfg, tmp_path / "healthpipe.yaml")
    port = cfg.receive.port

    def start_receiver():
        process = start_process("receive", config_file, cfg, log=tmp_path / "receive.log")
        wait_until(lambda: _metric(port, "healthpipe_receive_samples_total") >= 0 and _ready(port), 60,
                   what="the receiver up")
        return process

    receiver = start_receiver()
    consumer = ConsumerThread(cfg)
    started_ms = int(time.time() * 1000)
    prometheus = Prometheus3(tmp_path, port, V2)
    kafka_pid = stack.service("kafka").pid()
    assert kafka_pid is not None
    try:
        wait_until(lambda: _metric(port, "healthpipe_receive_samples_total") > 200, 60, what="samples flowing")
        time.sleep(10)  # a range worth verifying before the fault
        os.kill(kafka_pid, signal.SIGSTOP)  # Kafka frozen: a push's records wait unacknowledged in the receiver
        try:
            wait_until(lambda: _metric(port, "healthpipe_receive_requests_in_flight") >= 1, 30, interval=0.05,
                       what="a push in flight")
            receiver.kill()  # SIGKILL, with that request unanswered
            receiver.wait(10)
        finally:
            os.kill(kafka_pid, signal.SIGCONT)
        receiver = start_receiver()
        end_ms = stored_up_to(cfg, prometheus, timeout=240)
        assert prometheus.value("prometheus_remote_storage_samples_failed_total") == 0
        verify_exact(cfg, prometheus, started_ms, end_ms)
    finally:
        prometheus.stop()
        consumer.stop()
        receiver.kill()
        receiver.wait(10)
