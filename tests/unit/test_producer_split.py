"""ProducerService.publish_splitting with a Prometheus that refuses reads over a sample limit (a fake extractor) and
a publisher that records transactions: what goes into each transaction and where the watermark moves. The real
Prometheus and Kafka version: tests/integration/test_producer.py::test_a_window_too_large_for_prometheus_..."""

from healthpipe.common.config import HealthpipeConfig, QuerySettings
from healthpipe.common.errors import PrometheusTooLarge
from healthpipe.producer.extractor import Series
from healthpipe.producer.service import ProducerService
from healthpipe.producer.windows import Window

SERIES = [f"node-{i}" for i in range(8)]


class LimitedPrometheus:
    """Samples every 100 ms for each series; refuses a read of more than `limit` samples."""

    def __init__(self, limit: int):
        self.limit = limit
        self.reads: list[tuple[Window, str]] = []

    def _samples(self, window: Window, names) -> list[Series]:
        stamps = [t for t in range(window.start_ms + 1, window.end_ms + 1) if t % 100 == 0]
        if len(stamps) * len(names) > self.limit:
            raise PrometheusTooLarge("q", "execution: query processing would load too many samples")
        return [Series({"instance": n}, [(t, "1") for t in stamps]) for n in names]

    def read_window(self, q, window):
        self.reads.append((window, "all"))
        return self._samples(window, SERIES)

    def read_window_by_series(self, q, window, label):
        self.reads.append((window, label))
        half = len(SERIES) // 2
        return self._samples(window, SERIES[:half]) + self._samples(window, SERIES[half:])


class Transactions:
    in_transaction = False
    transactions_begun = 0

    def __init__(self):
        self.committed: list[tuple[list[tuple[str, int]], int | None]] = []

    def publish(self, query, windows, watermark_ms):
        self.committed.append(([(w.labels["instance"], t) for w in windows for t, _ in w.samples], watermark_ms))
        return len(windows)


def producer(limit: int) -> ProducerService:
    service = ProducerService(HealthpipeConfig())
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
