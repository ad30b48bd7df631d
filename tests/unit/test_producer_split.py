"""ProducerService.publish_splitting with a Prometheus that refuses reads over a sample limit (a fake extractor) and
a publisher that records transactions: what goes into each transaction and where the watermark moves. The real
Prometheus and Kafka version: tests/integration/test_producer.py::test_a_window_too_large_for_prometheus_..."""

import weakref

from healthpipe.common.config import HealthpipeConfig, QuerySettings
from healthpipe.common.errors import PrometheusTooLarge
from healthpipe.producer.extractor import Series
from healthpipe.producer.service import ProducerService
from healthpipe.producer.windows import Window

SERIES = [f"node-{i}" for i in range(8)]


class Group(list):
    """A group of series as the extractor yields it (a list that can be watched with a weak reference)."""


class LimitedPrometheus:
    """Samples every 100 ms for each series; refuses a read of more than `limit` samples."""

    def __init__(self, limit: int):
        self.limit = limit
        self.reads: list[tuple[Window, str]] = []
        self.groups_alive_at_read: list[int] = []

    def _samples(self, window: Window, names) -> list[Series]:
        stamps = [t for t in range(window.start_ms + 1, window.end_ms + 1) if t % 100 == 0]
        if len(stamps) * len(names) > self.limit:
            raise PrometheusTooLarge("q", "execution: query processing would load too many samples")
        return [Series({"instance": n}, [(t, "1") for t in stamps]) for n in names]

    def read_window(self, q, window):
        self.reads.append((window, "all"))
        return self._samples(window, SERIES)

    def count_series(self, q, window):
        self.reads.append((window, "count"))
        return len(SERIES)

    def read_window_in_groups(self, q, window, label, groups):
        self.reads.append((window, label))
        size = -(-len(SERIES) // groups)
        earlier: list[weakref.ref] = []
        for first in range(0, len(SERIES), size):
            self.reads.append((window, f"group of {len(SERIES[first:first + size])}"))
            # the reader holds one group: every group before this one is gone when it is read
            self.groups_alive_at_read.append(sum(1 for ref in earlier if ref() is not None))
            group = Group(self._samples(window, SERIES[first:first + size]))
            earlier.append(weakref.ref(group))
            yield group
            del group


class Transactions:
    in_transaction = False
    outcome_unknown = False
    transactions_begun = 0

    def __init__(self, events: list[tuple] | None = None):
        self.committed: list[tuple[list[tuple[str, int]], int | None]] = []
        self.events = events if events is not None else []

    def publish(self, query, windows, watermark_ms):
        self.events.append(("begin",))
        sent = []
        for w in windows:
            self.events.append(("message", w.labels["instance"]))
            sent.append(w)
        self.committed.append(([(w.labels["instance"], t) for w in sent for t, _ in w.samples], watermark_ms))
        self.events.append(("commit", watermark_ms))
        return len(sent)


def producer(limit: int, **extract) -> ProducerService:
    service = ProducerService(HealthpipeConfig(extract=extract))
    service.extractor = LimitedPrometheus(limit)  # type: ignore[assignment]
    service.publisher = Transactions()  # type: ignore[assignment]
    return service


QUERY = QuerySettings(name="q", promql="up", mode="raw")


def test_halves_in_time_each_its_own_transaction_and_watermark():
    service = producer(limit=8 * 25)  # 8 series × 25 samples: a 2.5 s read at most
    published = service.publish_splitting(QUERY, Window(0, 8000))
    txs = service.publisher.committed
    assert published == 8 * 80
    assert [wm for _, wm in txs] == [2000, 4000, 6000, 8000]  # halves of halves, in order
    assert sorted(s for samples, _ in txs for s in samples) == sorted((n, t) for n in SERIES
                                                                     for t in range(100, 8001, 100))
    assert service.watermarks["q"] == 8000
    assert service.window_limit_ms["q"] == 2000  # later windows start at the size that worked


def test_a_second_too_large_for_every_series_is_read_by_series_in_one_transaction():
    service = producer(limit=4 * 10)  # four series' 1 s (10 samples each) at most: 1 s of all 8 is refused
    service.publish_splitting(QUERY, Window(0, 2000))
    txs = service.publisher.committed
    assert [wm for _, wm in txs] == [1000, 2000]  # 2 s halves to 1 s, and no further in time
    assert [how for _, how in service.extractor.reads].count("instance") == 2  # each 1 s read by series, whole
    assert all(len(samples) == 80 for samples, _ in txs)


def test_a_window_of_more_series_than_max_series_per_read_is_read_group_by_group_into_one_transaction():
    """8 series, at most 3 a read: three groups, each read only after the previous group's messages went to the
    publisher (the producer holds one group, not the window), all in one transaction with the watermark. The
    first window's size comes from Prometheus' count; the next window's from the window before."""
    events: list[tuple] = []
    service = producer(limit=10**9, max_series_per_read=3)
    service.publisher = Transactions(events)  # type: ignore[assignment]
    prometheus = service.extractor
    real_groups = prometheus.read_window_in_groups

    def logged(*args):
        for group in real_groups(*args):
            events.append(("read", len(group)))
            yield group
            del group

    prometheus.read_window_in_groups = logged
    service.publish_splitting(QUERY, Window(0, 1000))
    assert events == [("begin",), ("read", 3), *[("message", n) for n in SERIES[:3]], ("read", 3),
                      *[("message", n) for n in SERIES[3:6]], ("read", 2), *[("message", n) for n in SERIES[6:]],
                      ("commit", 1000)]
    assert service.publisher.committed[0][0] == [(n, t) for n in SERIES for t in range(100, 1001, 100)]
    assert prometheus.groups_alive_at_read == [0, 0, 0]  # no group outlives its messages
    service.publish_splitting(QUERY, Window(1000, 2000))
    assert [how for _, how in prometheus.reads].count("count") == 1  # the second window: the first's 8 series
    assert service.window_series["q"] == 8 and service.watermarks["q"] == 2000


def test_a_window_within_max_series_per_read_is_read_whole_before_its_transaction():
    events: list[tuple] = []
    service = producer(limit=10**9)  # 50,000 a read by default
    service.publisher = Transactions(events)  # type: ignore[assignment]
    service.publish_splitting(QUERY, Window(0, 1000))
    assert [how for _, how in service.extractor.reads] == ["count", "all"]
    assert events[0] == ("begin",) and len(service.publisher.committed) == 1


def test_a_read_failing_inside_the_transaction_aborts_it(monkeypatch):
    """TransactionalPublisher with a stand-in for librdkafka's producer (this class's unit test): when `windows`
    raises mid-way (a group's Prometheus read), the open transaction is aborted, never committed, and the error
    is the caller's to see. The real Kafka version: tests/integration/test_producer.py (a group refused)."""
    from healthpipe.common.errors import PrometheusUnavailable
    from healthpipe.common.messages import SeriesWindow
    from healthpipe.producer import publisher as module

    calls: list[str] = []

    class Librdkafka:
        def __getattr__(self, name):
            return lambda *args, **kwargs: calls.append(name)

    monkeypatch.setattr(module, "transactional_producer", lambda cfg, tid: Librdkafka())
    publisher = module.TransactionalPublisher(HealthpipeConfig())

    def windows():
        yield SeriesWindow("q", "gauge", {"instance": "a"}, 0, 1000, [(1000, "1")])
        raise PrometheusUnavailable("q", "the second group's read timed out")

    try:
        publisher.publish("q", windows(), 1000)
        raise AssertionError("the read's failure was swallowed")
    except PrometheusUnavailable:
        pass
    assert "begin_transaction" in calls and "produce" in calls
    assert "abort_transaction" in calls and "commit_transaction" not in calls
    assert not publisher.in_transaction


def test_a_count_prometheus_refuses_as_too_large_reads_the_window_as_before():
    """A Prometheus so strict that even count(<query>) is refused: the window is read whole (and split when
    refused), not failed."""
    service = producer(limit=10**9, max_series_per_read=3)

    def refused(q, window):
        raise PrometheusTooLarge("q", "execution: query processing would load too many samples")

    service.extractor.count_series = refused
    assert service.publish_splitting(QUERY, Window(0, 1000)) == 8 * 10
    assert [how for _, how in service.extractor.reads] == ["all"]
    assert service.window_series["q"] == 8  # the next window is sized from this one
