"""The hold: what the consumer does while its sink (or the dead-letter topic) is unavailable.

Like quix-streams' PausingManager: on the first failure every assigned partition is paused, so polling
keeps the member in its group (max.poll.interval.ms, rebalance callbacks) without reading more; the work in
flight is retried after a backoff, or exactly after the server's Retry-After; the first success resumes
every partition. Nothing is committed while held, and nothing is dropped.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer

from healthpipe.common.errors import Retryable
from healthpipe.common.retry import backoff
from healthpipe.consumer.metrics import ConsumerMetrics

log = logging.getLogger(__name__)


class Hold:
    def __init__(self, metrics: ConsumerMetrics, cap_seconds: float = 10.0, clock=time.monotonic):
        self.metrics = metrics
        self.cap = cap_seconds
        self.clock = clock
        self.attempts = 0
        self.retry_at = 0.0
        self.last_error = ""  # what the last attempt failed on: /readyz says it

    @property
    def active(self) -> bool:
        return self.attempts > 0

    def start_or_extend(self, consumer: Consumer, exc: Retryable, held_samples: int) -> float:
        """A flushing step failed: pause (first time), schedule the next attempt; returns the delay."""
        self.metrics.write_failures.labels(exc.reason).inc()
        delay = backoff(self.attempts, exc.retry_after, cap=self.cap)
        self.attempts += 1
        self.last_error = str(exc)
        self.retry_at = self.clock() + delay
        if self.attempts == 1:
            consumer.pause(consumer.assignment())
            self.metrics.paused.set(1)
        log.warning("flush_failed attempt=%d retry_in=%.1fs samples=%d error=%s", self.attempts, delay,
                    held_samples, exc)
        return delay

    def keep_paused(self, consumer: Consumer) -> None:
        """Pause whatever we own now, including partitions assigned since the hold began."""
        consumer.pause(consumer.assignment())

    def due(self) -> bool:
        return self.clock() >= self.retry_at

    def seconds_left(self) -> float:
        return max(0.0, self.retry_at - self.clock())

    def release(self, consumer: Consumer) -> None:
        """Leave the hold: resume every partition we own."""
        if self.active:
            log.info("flush_recovered attempts=%d", self.attempts)
            self.attempts = 0
            self.last_error = ""
            consumer.resume(consumer.assignment())
            self.metrics.paused.set(0)
