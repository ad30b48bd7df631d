"""The producer's own metrics, in an injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ProducerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.samples_extracted = Counter("healthpipe_producer_samples_extracted_total",
                                         "Samples read from Prometheus", ["query"], registry=r)
        self.samples_published = Counter("healthpipe_producer_samples_published_total",
                                         "Samples in committed Kafka transactions", ["query"], registry=r)
        self.messages_published = Counter("healthpipe_producer_messages_published_total",
                                          "Kafka messages in committed transactions", ["query"], registry=r)
        self.query_errors = Counter("healthpipe_producer_query_errors_total",
                                    "Windows that failed (Prometheus or Kafka)", ["query", "stage"], registry=r)
        self.window_splits = Counter("healthpipe_producer_window_splits_total",
                                     "Windows Prometheus refused as too large, read in smaller pieces instead",
                                     ["query", "by"], registry=r)
        self.series_groups = Counter("healthpipe_producer_series_group_reads_total",
                                     "Answers read for windows taken in groups of series (over "
                                     "extract.max_series_per_read series, or refused whole)", ["query"], registry=r)
        self.prometheus_latency = Histogram("healthpipe_producer_prometheus_request_seconds",
                                            "Prometheus API request latency", ["endpoint", "outcome"], registry=r)
        self.watermark_age = Gauge("healthpipe_producer_watermark_age_seconds",
                                   "Now minus the query's committed watermark", ["query"], registry=r)
        self.watermark = Gauge("healthpipe_producer_watermark_timestamp_seconds",
                               "The query's committed watermark", ["query"], registry=r)
        self.transactions = Counter("healthpipe_producer_transactions_total",
                                    "Kafka transactions by outcome", ["outcome"], registry=r)
        self.transaction_open = Gauge("healthpipe_producer_transaction_open",
                                      "1 while a Kafka transaction is open (data sent, not yet committed)", registry=r)
        self.transactions_begun = Gauge("healthpipe_producer_transactions_begun",
                                        "Kafka transactions begun since the process started (the open one's number)",
                                        registry=r)
        self.cycle_seconds = Histogram("healthpipe_producer_cycle_seconds", "Duration of one cycle", registry=r)

    def on_prometheus_request(self, endpoint: str, seconds: float, ok: bool) -> None:
        self.prometheus_latency.labels(endpoint, "ok" if ok else "error").observe(seconds)
