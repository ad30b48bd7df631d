"""The consumer's own metrics, in an injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from healthpipe.common.bounded import CacheCollector


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages_consumed = Counter("healthpipe_consumer_messages_consumed_total", "Kafka messages consumed",
                                         registry=r)
        self.samples_consumed = Counter("healthpipe_consumer_samples_consumed_total",
                                        "Samples in consumed messages", registry=r)
        self.samples_written = Counter("healthpipe_consumer_samples_written_total",
                                       "Points InfluxDB acknowledged", registry=r)
        self.samples_dropped = Counter("healthpipe_consumer_samples_dropped_total",
                                       "Samples dropped while cleaning", ["reason"], registry=r)
        self.dead_letters = Counter("healthpipe_consumer_dead_letters_total", "Messages or points dead-lettered",
                                    ["reason"], registry=r)
        self.batch_samples = Histogram("healthpipe_consumer_batch_samples", "Samples per flushed batch",
                                       buckets=(10, 100, 500, 1000, 2500, 5000, 10000, 25000), registry=r)
        self.write_seconds = Histogram("healthpipe_consumer_influx_write_seconds", "InfluxDB write latency",
                                       registry=r)
        self.write_failures = Counter("healthpipe_consumer_influx_write_failures_total",
                                      "Failed flushes, retried: the sink's write or the dead letters' delivery "
                                      "(reason: http_<status>, unreachable, dead_letter_error, ...)", ["reason"],
                                      registry=r)
        self.lag = Gauge("healthpipe_consumer_lag", "Consumer lag per partition", ["topic", "partition"],
                         registry=r)
        self.commit_failures = Counter("healthpipe_consumer_commit_failures_total",
                                       "Offset commits Kafka refused (the data is written; it will be re-delivered)",
                                       registry=r)
        self.offsets_lost = Counter("healthpipe_consumer_offsets_lost_total",
                                    "Offsets skipped because they fell out of the topic's retention",
                                    ["topic", "partition"], registry=r)
        self.committed = Gauge("healthpipe_consumer_committed_offset", "Last committed offset",
                               ["topic", "partition"], registry=r)
        # Work in flight, for operators and for fault tests that must prove a fault hit it.
        self.uncommitted = Gauge("healthpipe_consumer_uncommitted_messages",
                                 "Messages consumed whose offsets are not committed yet (open batch + in flight)",
                                 registry=r)
        self.writes_outstanding = Gauge("healthpipe_consumer_writes_outstanding",
                                        "Sink writes handed to a writer thread that have not returned", registry=r)
        self.paused = Gauge("healthpipe_consumer_paused", "1 while partitions are paused for InfluxDB",
                            registry=r)
        # the sink's bounded caches (the service fills the list in)
        self.caches = CacheCollector([])
        r.register(self.caches)
        self.rebalances = Counter("healthpipe_consumer_rebalances_total", "Rebalance events", ["kind"],
                                  registry=r)
