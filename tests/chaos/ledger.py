"""Seeded test data with a truth ledger: the exact (series, timestamp, value) set InfluxDB must end up with."""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from dataclasses import dataclass, field

from common.messages import SeriesWindow, headers
from tests.support import influx


@dataclass
class Ledger:
    run: str
    truth: set[tuple[str, int, float]] = field(default_factory=set)
    messages: list[tuple[bytes, bytes, list]] = field(default_factory=list)

    def loaded(self, cfg) -> set[tuple[str, int, float]]:
        return influx.run_points(cfg.load.influxdb, self.run, start="-30d")

    def assert_exact(self, cfg) -> None:
        got = self.loaded(cfg)
        missing, extra = self.truth - got, got - self.truth
        assert not missing and not extra, f"missing={len(missing)} extra={len(extra)} e.g. {list(missing)[:3]}"


def checksum(points: set) -> str:
    return hashlib.sha256(repr(sorted(points)).encode()).hexdigest()


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
        ledger.truth |= {(f"node-{s}", ts, float(v)) for ts, v in samples}
    rng.shuffle(ledger.messages)  # interleave series; per-key order does not matter for distinct timestamps
    return ledger
