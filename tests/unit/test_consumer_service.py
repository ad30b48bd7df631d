"""ConsumerService's batching state machine with Kafka and InfluxDB replaced by fakes (the real thing is in
tests/integration and tests/chaos). These pin orderings that real services only hit by chance."""

from __future__ import annotations

import os
import time

from confluent_kafka import TopicPartition

from common.config import load_config
from common.errors import InfluxUnavailableError
from common.messages import SeriesWindow, headers
from consumer.loader import WriteResult
from consumer.service import ConsumerService

NOW_MS = int(time.time() * 1000) - 60_000


class FakeMessage:
    def __init__(self, offset: int):
        window = SeriesWindow("availability", "availability", {"__name__": "up", "instance": f"i{offset}"},
                              NOW_MS - 1, NOW_MS, [(NOW_MS, "1")])
        self._offset, self._key, self._value = offset, window.key, window.to_json()

    def error(self):
        return None

    def topic(self):
        return "hm"

    def partition(self):
        return 0

    def offset(self):
        return self._offset

    def key(self):
        return self._key

    def value(self):
        return self._value

    def headers(self):
        return headers()


class FakeKafka:
    """Hands out the queued messages one poll at a time; records commits and pauses."""

    def __init__(self):
        self.queue: list[FakeMessage] = []
        self.commits: list[list[tuple[int, int]]] = []
        self.paused = False

    def poll(self, timeout):
        return self.queue.pop(0) if self.queue else None

    def consume(self, n, timeout):
        return []

    def assignment(self):
        return [TopicPartition("hm", 0)]

    def pause(self, partitions):
        self.paused = True

    def resume(self, partitions):
        self.paused = False

    def commit(self, offsets, asynchronous):
        self.commits.append([(tp.partition, tp.offset) for tp in offsets])
        return offsets


class FakeInflux:
    def __init__(self):
        self.up = False
        self.lines: list[str] = []

    def write(self, lines):
        if not self.up:
            raise InfluxUnavailableError("InfluxDB unreachable (fake)")
        self.lines += lines
        return WriteResult(written=len(lines))


class NoDeadLetters:
    def flush(self):
        pass


def service() -> tuple[ConsumerService, FakeKafka, FakeInflux]:
    cfg = load_config(path=os.devnull, consumer={"writers": 2, "metrics_port": 0})
    svc = ConsumerService(cfg)
    kafka, influx = FakeKafka(), FakeInflux()
    svc.consumer, svc.dead_letters = kafka, NoDeadLetters()  # type: ignore[assignment]
    svc.loader.write = influx.write  # type: ignore[method-assign]
    return svc, kafka, influx


def wait_for_writes(svc: ConsumerService) -> None:
    for batch in svc.inflight:
        if batch.write is not None:
            batch.write.exception(timeout=5)


def test_a_failed_write_holds_everything_until_it_is_retried_and_commits_stay_in_order():
    svc, kafka, influx = service()
    kafka.queue.append(FakeMessage(0))
    svc.run_single_cycle()  # caught up: batch 1 goes to a writer, which fails (InfluxDB down)
    wait_for_writes(svc)
    kafka.queue.append(FakeMessage(1))
    svc.run_single_cycle()  # message 1 joins the open batch; batch 1's failure is noticed: hold
    assert svc._held() and kafka.paused
    assert svc.metrics.registry.get_sample_value("healthpipe_consumer_paused") == 1
    # While held, nothing is dispatched past batch 1 and nothing is committed, however often we cycle.
    for _ in range(3):
        svc.run_single_cycle(timeout=0)
    assert svc._held() and kafka.commits == [] and influx.lines == []

    influx.up = True
    svc._retry_at = 0  # skip the backoff
    svc.run_single_cycle(timeout=0)
    assert not svc._held() and not kafka.paused
    assert kafka.commits == [[(0, 1)], [(0, 2)]]  # batch 1, then the batch holding message 1
    assert len(influx.lines) == 2


def test_two_writes_in_flight_commit_in_dispatch_order():
    svc, kafka, influx = service()
    influx.up = True
    for offset in range(3):
        kafka.queue.append(FakeMessage(offset))
        svc.run_single_cycle(timeout=0)
    svc.flush()
    assert kafka.commits == [[(0, 1)], [(0, 2)], [(0, 3)]]
    assert not svc.inflight and not svc.batch
