"""The original plan's test module, kept under its name: fast unit tests of the pipeline's pieces.

The real-service versions of these checks live in tests/integration/.
"""

import unittest
from unittest import mock

from healthpipe.common.config import load_config
from healthpipe.common.errors import PrometheusUnavailable
from healthpipe.producer.extractor import PrometheusExtractor, Series
from healthpipe.producer.service import ProducerService
from healthpipe.sinks.influx.transformer import DataTransformer

NOW = 1_800_000_000.0


class FakePublisher:
    outcome_unknown = False  # every transaction here commits or fails knowingly

    def __init__(self):
        self.transactions = []

    def publish(self, query, windows, watermark_ms):
        windows = list(windows)
        self.transactions.append((query, windows, watermark_ms))
        return len(windows)


class TestSimpleETL(unittest.TestCase):
    def setUp(self):
        self.config = load_config("/dev/null", extract={"lag_seconds": 10, "max_backfill": "1m", "queries": [
            {"name": "availability", "promql": 'up{job="test-app"}', "mode": "raw", "metric_type": "availability"},
            {"name": "error_rate", "promql": "sum(rate(x[1m]))", "mode": "range", "step": "15s"}]})
        self.service = ProducerService(self.config, clock=lambda: NOW)
        self.service.publisher = FakePublisher()
        self.service.extractor.now_ms = lambda: int(NOW * 1000)  # Prometheus' clock agrees with ours
        # a raw query's first window asks Prometheus how many series it holds: one, here (no Prometheus in a unit test)
        self.service.extractor.count_series = lambda q, window: 1

    def test_pipeline_initialization(self):
        self.assertIsInstance(self.service.extractor, PrometheusExtractor)
        self.assertEqual(self.service.extractor.prometheus_url, "http://localhost:9090")
        self.assertFalse(self.service.ready())  # not ready before initialize()

    def test_config_loading(self):
        self.assertEqual([q.name for q in self.config.extract.queries], ["availability", "error_rate"])
        self.assertEqual(self.config.load.influxdb.bucket, "health_metrics")
        self.assertIn("up", self.config.transform.valid_metrics)

    def test_single_cycle_execution(self):
        def read_window(q, window):
            return [Series({"__name__": "up", "job": "test-app"}, [(window.end_ms, "1")])]

        with mock.patch.object(self.service.extractor, "read_window", side_effect=read_window):
            published = self.service.run_single_cycle()
        self.assertEqual(published, {"availability": 1, "error_rate": 1})
        limit_ms = int((NOW - 10) * 1000)
        self.assertEqual(self.service.watermarks["availability"], limit_ms)
        query, windows, watermark = self.service.publisher.transactions[0]
        self.assertEqual((query, watermark), ("availability", self.service.watermarks["availability"]))
        lines = DataTransformer(self.config.transform, clock=lambda: NOW).transform(windows).lines
        self.assertEqual(len(lines), 1)
        self.assertTrue(lines[0].startswith("health_metrics,"))

    def test_error_handling(self):
        def read_window(q, window):
            if q.name == "availability":
                raise PrometheusUnavailable(q.name, "HTTP 500")
            return []

        with mock.patch.object(self.service.extractor, "read_window", side_effect=read_window):
            published = self.service.run_single_cycle()
        # The failing query keeps its watermark (retried next cycle); the other carries on.
        self.assertNotIn("availability", self.service.watermarks)
        self.assertIn("error_rate", self.service.watermarks)
        self.assertEqual(published["availability"], 0)
        self.assertEqual(self.service.metrics.registry.get_sample_value(
            "healthpipe_producer_query_errors_total", {"query": "availability", "stage": "prometheus"}), 1.0)


if __name__ == "__main__":
    unittest.main()
