"""The consumer's state machine (loop, checkpoint, hold) with Kafka and the sink replaced by fakes (the real
thing is in tests/integration and tests/chaos). These pin orderings that real services only hit by chance."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from healthpipe.common.config import load_config
from healthpipe.common.errors import DeadLetterError, SinkUnavailable
from healthpipe.common.messages import SeriesWindow, headers
from healthpipe.consumer.service import ConsumerService
from healthpipe.sinks.base import Rejected, Sink, WriteOutcome

NOW_MS = int(time.time() * 1000) - 60_000


class FakeMessage:
    def __init__(self, offset: int, partition: int = 0, value: bytes | None = None):
        window = SeriesWindow("availability", "availability", {"__name__": "up", "instance": f"i{offset}"},
                              NOW_MS - 1, NOW_MS, [(NOW_MS, "1")])
        self._offset, self._partition, self._key = offset, partition, window.key
        self._value = window.to_json() if value is None else value

    def error(self):
        return None

    def topic(self):
        return "hm"

    def partition(self):
        return self._partition

    def offset(self):
        return self._offset

    def key(self):
        return self._key

    def value(self):
        return self._value

    def headers(self):
        return headers()


class FakeKafka:
    """Hands out the queued messages one poll at a time; records commits, pauses and seeks."""

    def __init__(self):
        self.queue: list[FakeMessage] = []
        self.commits: list[list[tuple[int, int]]] = []
        self.seeks: list[tuple[int, int]] = []
        self.paused = False
        self.commit_error: KafkaException | None = None

    def poll(self, timeout):
        return self.queue.pop(0) if self.queue else None

    def consume(self, n, timeout):
        return []

    def assignment(self):
        return [TopicPartition("hm", 0), TopicPartition("hm", 1)]

    def pause(self, partitions):
        self.paused = True

    def resume(self, partitions):
        self.paused = False

    def seek(self, tp):
        self.seeks.append((tp.partition, tp.offset))

    def commit(self, offsets, asynchronous):
        if self.commit_error is not None:
            raise self.commit_error
        self.commits.append([(tp.partition, tp.offset) for tp in offsets])
        return offsets


@dataclass
class FakeBatch:
    windows: list
    samples_in: int
    dropped: Counter = field(default_factory=Counter)
    done: bool = False


class FakeSink(Sink):
    """A sink that is up or down at the test's word, and refuses the windows it is told to (the base class's
    defaults for the rest)."""

    name = "fake"
    batch_size = 5000

    def __init__(self):
        self.up = False
        self.written: list = []
        self.refuse: set[str] = set()  # instance labels whose points are refused for good

    def check(self):
        pass

    def prepare(self, windows, sources):
        return FakeBatch(list(windows), sum(len(w.samples) for w in windows))

    def write(self, prepared):
        if not self.up:
            raise SinkUnavailable("sink unreachable (fake)")
        if not prepared.done:
            self.written += [w.labels["instance"] for w in prepared.windows]
            prepared.done = True
        rejected = [Rejected(i, b"x", "refused") for i, w in enumerate(prepared.windows)
                    if w.labels["instance"] in self.refuse]
        return WriteOutcome(len(prepared.windows) - len(rejected), rejected)


class FakeDeadLetters:
    def __init__(self):
        self.up = True
        self.delivered: list = []

    def deliver(self, letters):
        if letters and not self.up:
            raise DeadLetterError("dead-letter topic unavailable (fake)")
        self.delivered += letters


def service(writers: int = 2) -> tuple[ConsumerService, FakeKafka, FakeSink, FakeDeadLetters]:
    from healthpipe.consumer.checkpoint import Checkpoint

    cfg = load_config(path=os.devnull, consumer={"writers": writers, "metrics_port": 0})
    sink, kafka, letters = FakeSink(), FakeKafka(), FakeDeadLetters()
    svc = ConsumerService(cfg, sink=sink)
    svc.consumer = kafka  # type: ignore[assignment]
    svc.checkpoint = Checkpoint(sink, letters, svc.metrics, writers)  # type: ignore[arg-type]
    svc.checkpoint.consumer = kafka  # type: ignore[assignment]
    return svc, kafka, sink, letters


def wait_for_writes(svc: ConsumerService) -> None:
    for batch in svc.checkpoint.inflight:
        if batch.write is not None:
            batch.write.exception(timeout=5)


def metric(svc: ConsumerService, name: str, labels: dict | None = None) -> float:
    return svc.metrics.registry.get_sample_value(name, labels or {}) or 0.0


def test_a_failed_write_holds_everything_until_it_is_retried_and_commits_stay_in_order():
    svc, kafka, sink, _ = service()
    kafka.queue.append(FakeMessage(0))
    svc.run_single_cycle()  # caught up: batch 1 goes to a writer, which fails (sink down)
    wait_for_writes(svc)
    kafka.queue.append(FakeMessage(1))
    svc.run_single_cycle()  # message 1 joins the open batch; batch 1's failure is noticed: hold
    assert svc.hold.active and kafka.paused
    assert metric(svc, "healthpipe_consumer_paused") == 1
    # While held, nothing is dispatched past batch 1 and nothing is committed, however often we cycle.
    for _ in range(3):
        svc.run_single_cycle(timeout=0)
    assert svc.hold.active and kafka.commits == [] and sink.written == []

    sink.up = True
    svc.hold.retry_at = 0  # skip the backoff
    svc.run_single_cycle(timeout=0)
    assert not svc.hold.active and not kafka.paused
    assert kafka.commits == [[(0, 1)], [(0, 2)]]  # batch 1, then the batch holding message 1
    assert sink.written == ["i0", "i1"]


def test_two_writes_in_flight_commit_in_dispatch_order():
    svc, kafka, sink, _ = service()
    sink.up = True
    for offset in range(3):
        kafka.queue.append(FakeMessage(offset))
        svc.run_single_cycle(timeout=0)
    svc.flush()
    assert kafka.commits == [[(0, 1)], [(0, 2)], [(0, 3)]]
    assert not svc.checkpoint and not svc.batch


def test_a_writer_done_before_the_oldest_takes_the_next_batch_and_commits_wait_for_the_oldest():
    """Batch 1's write is slow, batch 2's returns at once: batch 3 goes to batch 2's writer while batch 1 still runs,
    nothing is committed before batch 1, and at 2 × writers batches held the loop waits for the oldest."""
    import threading

    svc, kafka, sink, _ = service(writers=2)
    sink.up = True
    release = threading.Event()
    fast_write = sink.write

    def write(prepared):
        if prepared.windows[0].labels["instance"] == "i0":
            assert release.wait(10)
        return fast_write(prepared)

    sink.write = write  # type: ignore[method-assign]

    def written(*instances: str) -> None:  # the writer threads' writes of these batches have returned
        deadline = time.monotonic() + 10
        while sink.written != list(instances) or svc.checkpoint.writes_outstanding() > 1:
            assert time.monotonic() < deadline, sink.written
            time.sleep(0.01)

    for offset in range(3):
        kafka.queue.append(FakeMessage(offset))
        svc.run_single_cycle(timeout=0)  # caught up each time: a batch per message
        if offset:
            written(*[f"i{o}" for o in range(1, offset + 1)])
    assert len(svc.checkpoint.inflight) == 3 and svc.checkpoint.writes_outstanding() == 1  # 1 running, 2 and 3 done
    assert kafka.commits == []
    kafka.queue.append(FakeMessage(3))
    svc.run_single_cycle(timeout=0)
    written("i1", "i2", "i3")
    assert len(svc.checkpoint.inflight) == 4 and svc.checkpoint.busy()  # 2 × writers held: only batch 1 lets more in
    release.set()
    svc.flush()
    assert kafka.commits == [[(0, 1)], [(0, 2)], [(0, 3)], [(0, 4)]]
    assert sink.written == ["i1", "i2", "i3", "i0"]


def test_revoke_while_the_sink_is_down_abandons_rewinds_and_resumes_what_we_keep():
    """Partition 1 is revoked while a batch holding partitions 0 and 1 cannot be written: nothing is
    committed, partition 0 (kept) is sought back to the batch's first offset, and the hold ends so the
    kept partition is not left paused (the bug the review found)."""
    svc, kafka, sink, _ = service()
    svc.settings = svc.settings.model_copy(update={"revoke_deadline_seconds": 0.2})
    kafka.queue += [FakeMessage(7, partition=0), FakeMessage(3, partition=1)]
    svc.run_single_cycle(timeout=0)
    svc.run_single_cycle(timeout=0)
    wait_for_writes(svc)
    svc.run_single_cycle(timeout=0)
    assert svc.hold.active and kafka.paused
    svc._on_revoke(kafka, [TopicPartition("hm", 1)])
    assert kafka.commits == []
    assert kafka.seeks == [(0, 7)]  # the kept partition re-reads the abandoned messages
    assert not svc.hold.active and not kafka.paused
    assert not svc.checkpoint and not svc.batch


def test_lost_partitions_are_never_committed():
    svc, kafka, sink, _ = service()
    sink.up = True
    kafka.queue.append(FakeMessage(5, partition=1))
    svc._poll_one(0)  # in the open batch, not dispatched
    svc._on_lost(kafka, [TopicPartition("hm", 1)])
    svc.flush()
    assert kafka.commits == [] and kafka.seeks == []  # someone else owns it now: no commit, no seek
    assert sink.written == []


def test_a_commit_kafka_refuses_is_counted_and_the_data_stays_written():
    svc, kafka, sink, _ = service()
    sink.up = True
    kafka.commit_error = KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
    kafka.queue.append(FakeMessage(0))
    svc.run_single_cycle(timeout=0)
    svc.flush()
    assert sink.written == ["i0"] and kafka.commits == []
    assert metric(svc, "healthpipe_consumer_commit_failures_total") == 1
    assert not svc.hold.active  # re-delivery overwrites identical points: nothing to hold for


def test_a_refused_commit_is_owed_and_retried_while_idle_until_it_lands():
    """ILLEGAL_GENERATION in a rebalance that leaves us the partition: with nothing more arriving on it, the
    committed offset would lag forever (chaos 09 caught it). The idle tick commits it again."""
    svc, kafka, sink, _ = service()
    sink.up = True
    svc.assigned = frozenset({("hm", 0), ("hm", 1)})
    kafka.commit_error = KafkaException(KafkaError(KafkaError.ILLEGAL_GENERATION))
    kafka.queue += [FakeMessage(0), FakeMessage(4, partition=1)]
    svc.run_single_cycle(timeout=0)
    svc.run_single_cycle(timeout=0)
    svc.flush()
    assert kafka.commits == [] and svc.checkpoint.owed == {("hm", 0): 1, ("hm", 1): 5}
    svc._tick()  # still refused: still owed
    assert kafka.commits == [] and svc.checkpoint.owed
    kafka.commit_error = None
    svc._on_revoke(kafka, [TopicPartition("hm", 1)])  # partition 1 left us: its new owner re-reads it
    svc.checkpoint._owed_retry_at = 0  # skip the once-a-second limit
    svc._tick()
    assert kafka.commits == [[(0, 1)]] and svc.checkpoint.owed == {}


def test_an_unavailable_dead_letter_topic_holds_the_commit_until_the_letters_are_delivered():
    svc, kafka, sink, letters = service()
    sink.up = True
    sink.refuse = {"i2"}
    letters.up = False
    kafka.queue += [FakeMessage(0), FakeMessage(1, value=b"not json"), FakeMessage(2)]
    for _ in range(3):
        svc.run_single_cycle(timeout=0)
    wait_for_writes(svc)
    svc.run_single_cycle(timeout=0)
    assert svc.hold.active and kafka.commits == [[(0, 1)]]  # only the batch before the first dead letter
    letters.up = True
    svc.hold.retry_at = 0
    svc.run_single_cycle(timeout=0)
    svc.flush()
    assert not svc.hold.active
    assert kafka.commits[-1] == [(0, 3)]
    assert sorted(letter.reason for letter in letters.delivered) == ["fake_rejected", "not_json"]
    assert metric(svc, "healthpipe_consumer_dead_letters_total", {"reason": "not_json"}) == 1
