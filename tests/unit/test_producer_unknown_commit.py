"""A commit whose outcome the producer cannot know: commit_transaction timed out (two of three brokers down in
tests/cluster's c4), the abort after it conflicted with it, and Kafka completed the commit once the brokers came
back. The producer must take its watermark from Kafka before the next window, or it publishes the committed
window again (the cluster suite saw 720 duplicate samples on the topic). Kafka's side is stood in for by a
publisher that commits but reports a failure, and a watermark topic holding what was committed."""

import pytest
from confluent_kafka import KafkaError, KafkaException

from healthpipe.common.config import HealthpipeConfig
from healthpipe.common.errors import PublishError
from healthpipe.producer import publisher as publisher_module
from healthpipe.producer import service as service_module
from healthpipe.producer.publisher import TransactionalPublisher
from healthpipe.producer.service import ProducerService
from tests.unit.test_producer_split import LimitedPrometheus

NOW_MS = 1_800_000_000_000


class CommitsButSaysItFailed:
    """Every transaction reaches the topic; the first one's commit reports a timeout (outcome unknown)."""

    in_transaction = False
    transactions_begun = 0

    def __init__(self):
        self.outcome_unknown = False
        self.topic: list[tuple[str, int]] = []  # (instance, ts) of every committed sample
        self.watermark_topic: dict[str, int] = {}
        self.calls = 0

    def ensure_initialized(self) -> None:
        pass

    def publish(self, query, windows, watermark_ms):
        self.calls += 1
        self.topic += [(w.labels["instance"], t) for w in windows for t, _ in w.samples]
        if watermark_ms is not None:
            self.watermark_topic[query] = watermark_ms
        if self.calls == 1:
            self.outcome_unknown = True
            raise PublishError("commit_transaction: timed out (retriable); abort: a commit is in progress")
        return 1


class Prometheus(LimitedPrometheus):
    def now_ms(self):
        return NOW_MS


def test_after_a_commit_of_unknown_outcome_the_watermark_comes_from_kafka_and_no_window_repeats(monkeypatch):
    cfg = HealthpipeConfig(extract={"queries": [{"name": "q", "promql": "up", "mode": "raw"}],
                                    "max_backfill": "20s", "lag_seconds": 0})
    service = ProducerService(cfg, clock=lambda: NOW_MS / 1000)
    service.extractor = Prometheus(limit=10**9)  # type: ignore[assignment]
    kafka = service.publisher = CommitsButSaysItFailed()  # type: ignore[assignment]
    monkeypatch.setattr(service_module.watermarks, "load", lambda cfg: dict(kafka.watermark_topic))

    service.run_single_cycle()  # the first window "fails"; it is on the topic all the same
    assert kafka.calls == 1 and kafka.topic and "q" not in service.watermarks
    service.clock = lambda: NOW_MS / 1000 + 10
    service.extractor.now_ms = lambda: NOW_MS + 10_000
    service.run_single_cycle()
    assert kafka.calls > 1, "the second cycle published nothing"
    assert service.watermarks["q"] == kafka.watermark_topic["q"]
    assert not kafka.outcome_unknown
    repeated = {s for s in kafka.topic if kafka.topic.count(s) > 1}
    assert not repeated, f"{len(repeated)} samples published twice, e.g. {sorted(repeated)[:3]}"


class TimedOutCommit:
    """librdkafka's side of c4: the commit times out (retriable, so the outcome is unknown), and the abort after
    it conflicts with the commit still in progress."""

    def __init__(self):
        self.commits = 0

    def begin_transaction(self):
        pass

    def produce(self, *args, **kwargs):
        pass

    def poll(self, timeout):
        return 0

    def commit_transaction(self, timeout):
        self.commits += 1
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "Timed out waiting for operation to finish",
                                        retriable=True))

    def abort_transaction(self, timeout):
        raise KafkaException(KafkaError(KafkaError._CONFLICT, "Conflicting commit_transaction API call is already "
                                        "in progress"))

    def init_transactions(self, timeout):
        pass


def test_a_commit_that_times_out_leaves_the_outcome_unknown(monkeypatch):
    monkeypatch.setattr(publisher_module, "transactional_producer", lambda cfg, tid: TimedOutCommit())
    publisher = TransactionalPublisher(HealthpipeConfig(), "t", timeout=0.2)
    with pytest.raises(PublishError):
        publisher.publish("q", [], 1000)
    assert publisher.outcome_unknown
    assert not publisher.in_transaction


def test_a_transaction_that_fails_before_its_commit_is_known_to_be_aborted(monkeypatch):
    monkeypatch.setattr(publisher_module, "transactional_producer", lambda cfg, tid: TimedOutCommit())
    publisher = TransactionalPublisher(HealthpipeConfig(), "t", timeout=0.2)

    def windows():
        raise PublishError("Prometheus went away mid-window")
        yield

    with pytest.raises(PublishError):
        publisher.publish("q", windows(), 1000)
    assert not publisher.outcome_unknown and publisher.producer.commits == 0
