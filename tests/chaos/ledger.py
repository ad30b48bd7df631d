"""Seeded test data with a truth ledger: the exact points InfluxDB must end up with, whole.

A point is compared whole: measurement, every tag, field, value and timestamp. The expected tags are
written out here by hand from the documented mapping (README "Points in InfluxDB"), not computed with the
consumer's code, so a transform that drops, renames or adds a tag fails the comparison.
"""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from healthpipe.common.messages import SeriesWindow, decode, headers
from tests.support import influx, kafka

# (measurement, sorted tag items, field, value, timestamp ms)
Point = tuple[str, tuple[tuple[str, str], ...], str, float, int]
_NOT_TAGS = {"result", "table", "_start", "_stop", "_time", "_value", "_field", "_measurement"}


def point_of(record: dict) -> Point:
    """A Flux record as a whole point."""
    tags = tuple(sorted((k, str(v)) for k, v in record.items() if k not in _NOT_TAGS and v is not None))
    return (record["_measurement"], tags, record["_field"], float(record["_value"]),
            round(record["_time"].timestamp() * 1000))


def expected_point(run: str, instance: str, ts: int, value: float) -> Point:
    """What the consumer must write for a ledger sample: labels {__name__: up, job: chaos, instance, run},
    query availability → metric=up, metric_type=availability, service=job, the other labels as they are."""
    tags = {"metric": "up", "metric_type": "availability", "service": "chaos", "job": "chaos",
            "instance": instance, "run": run}
    return ("health_metrics", tuple(sorted(tags.items())), "value", value, ts)


@dataclass
class Ledger:
    run: str
    truth: set[Point] = field(default_factory=set)
    messages: list[tuple[bytes, bytes, list]] = field(default_factory=list)

    def loaded(self, cfg) -> set[Point]:
        """Every point in the bucket tagged with this run, whole."""
        return {point_of(r) for r in influx.points(cfg.load.influxdb, f'r.run == "{self.run}"', start="0")}

    def add(self, instance: str, ts: int, value: float) -> None:
        self.truth.add(expected_point(self.run, instance, ts, value))

    def assert_exact(self, cfg) -> None:
        got = self.loaded(cfg)
        missing, extra = self.truth - got, got - self.truth
        assert not missing and not extra, (f"missing={len(missing)} extra={len(extra)} "
                                           f"e.g. missing {sorted(missing)[:2]} extra {sorted(extra)[:2]}")


def checksum(points: set) -> str:
    return hashlib.sha256(repr(sorted(points)).encode()).hexdigest()


def assert_no_duplicate_samples(cfg) -> None:
    """No (series, timestamp) twice among the committed messages of the data topic."""
    seen: Counter = Counter()
    for msg in kafka.read_topic(cfg, cfg.kafka.topic):
        w = decode(msg.value(), msg.headers())
        seen.update((w.key, ts) for ts, _ in w.samples)
    dupes = [k for k, n in seen.items() if n > 1]
    assert not dupes, f"{len(dupes)} duplicate (series, timestamp) on the topic, e.g. {dupes[:3]}"


def assert_dead_letters(cfg, expected: dict[str, int] | None = None) -> None:
    """The dead-letter topic holds exactly `expected` (reason → count); nothing when None."""
    letters = kafka.read_topic(cfg, cfg.kafka.dead_letter_topic)
    reasons = Counter(dict(m.headers())["healthpipe-dlq-reason"].decode() for m in letters)
    assert dict(reasons) == (expected or {}), f"dead letters {dict(reasons)} != expected {expected or {}}"


def generate(seed: int, n_series: int, n_samples: int, per_message: int = 100, start_ms: int | None = None) -> Ledger:
    """n_series × n_samples unique samples (1 s apart), as series-window messages of `per_message` samples."""
    rng = random.Random(seed)
    run = f"chaos-{seed}-{uuid.uuid4().hex[:8]}"  # unique per execution: earlier runs' points never count
    start = start_ms or int(time.time() * 1000) - 2 * 86_400_000
    ledger = Ledger(run)
    for s in range(n_series):
        labels = {"__name__": "up", "job": "chaos", "instance": f"node-{s}", "run": run}
        samples = [(start + i * 1000, repr(round(rng.uniform(0, 100), 3))) for i in range(n_samples)]
        for i in range(0, n_samples, per_message):
            part = samples[i:i + per_message]
            w = SeriesWindow("availability", "availability", labels, part[0][0] - 1, part[-1][0], part)
            ledger.messages.append((w.key, w.to_json(), headers()))
        for ts, v in samples:
            ledger.add(f"node-{s}", ts, float(v))
    rng.shuffle(ledger.messages)  # interleave series; per-key order does not matter for distinct timestamps
    return ledger
