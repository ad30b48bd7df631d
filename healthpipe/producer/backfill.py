"""`healthpipe backfill`: publish a historical window without touching the watermarks.

For re-reading a period (say after changing a query, or to repair a gap `healthpipe verify` found) while the
producer keeps running: the windows are published in their own transactions under a separate transactional
id, so they never fence the producer. Samples already on the topic are simply published again; the
consumer's writes overwrite identical points.
"""

from __future__ import annotations

import logging
import time

from healthpipe.common import logs
from healthpipe.common.config import HealthpipeConfig, QuerySettings, load_config
from healthpipe.common.errors import ConfigError
from healthpipe.common.kafka import ensure_topics
from healthpipe.common.progress import Steps
from healthpipe.common.times import parse_time
from healthpipe.producer.service import ProducerService
from healthpipe.producer.windows import align_down, align_up, chunk_ms, pending_windows

log = logging.getLogger(__name__)

BACKFILL_WINDOW_MS = 3_600_000  # raw mode reads an hour per request here (the live producer: extract.raw_chunk)


def publish_range(cfg: HealthpipeConfig, queries: list[QuerySettings], start_ms: int, end_ms: int,
                  progress: bool = True) -> int:
    """Publish every window of `queries` covering (start_ms, end_ms], watermarks untouched; returns samples."""
    ensure_topics(cfg)
    service = ProducerService(cfg, transactional_id=f"{cfg.producer.transactional_id}-backfill")
    service.start_publisher()
    total = 0
    steps = Steps()
    try:
        for q in queries:
            grid = q.grid_ms
            windows = pending_windows(align_down(start_ms, grid), align_up(end_ms, grid),
                                      chunk_ms(q.mode, q.step_ms, BACKFILL_WINDOW_MS))
            for i, window in enumerate(windows):
                total += service.publish_window(q, window, advance_watermark=False)
                if progress:
                    steps(f"backfill {q.name}", i + 1, len(windows), f"{total} samples")
    finally:
        steps.close()
        service.close()
    return total


def main(config_path: str | None, start: str, end: str, query: str | None = None) -> int:
    cfg = load_config(config_path)
    logs.configure_from(cfg)
    start_ms, end_ms = parse_time(start), parse_time(end)
    if end_ms <= start_ms:
        raise ConfigError(f"--end ({end}) must be after --start ({start})")
    t0 = time.monotonic()
    total = publish_range(cfg, cfg.select_queries([query] if query else None), start_ms, end_ms)
    log.info("backfill_done samples=%d seconds=%.1f", total, time.monotonic() - t0)
    return 0
