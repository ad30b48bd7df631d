"""`healthpipe backfill`: publish a historical window without touching the watermarks.

For re-reading a period (say after changing a query) while the producer keeps running: the windows are
published in their own transactions under a separate transactional id, so they never fence the producer.
Samples already on the topic are simply published again; the consumer's writes overwrite identical points.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import datetime

from common import logs
from common.config import load_config
from common.errors import ConfigError
from common.kafka import ensure_topics
from producer.publisher import TransactionalPublisher
from producer.service import ProducerService, _grid
from producer.windows import align_down, align_up, chunk_ms, pending_windows

log = logging.getLogger(__name__)


def parse_time(text: str) -> int:
    """ISO 8601 (a trailing Z is fine) or unix seconds, to milliseconds."""
    try:
        return int(float(text) * 1000)
    except ValueError:
        pass
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        raise ConfigError(f"not a time: {text!r} (expected ISO 8601 like 2026-11-25T10:00:00Z or unix seconds)") \
            from None


def _progress(done: int, total: int, label: str) -> None:
    width = 30
    filled = width * done // max(total, 1)
    sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def main(config_path: str | None, start: str, end: str, query: str | None = None) -> int:
    cfg = load_config(config_path)
    logs.configure(cfg.pipeline.log_level, cfg.secrets())
    start_ms, end_ms = parse_time(start), parse_time(end)
    if end_ms <= start_ms:
        raise ConfigError(f"--end ({end}) must be after --start ({start})")
    queries = [q for q in cfg.extract.queries if query is None or q.name == query]
    if not queries:
        raise ConfigError(f"no query named {query!r}; known: {', '.join(q.name for q in cfg.extract.queries)}")
    ensure_topics(cfg)
    service = ProducerService(cfg)
    service.publisher = TransactionalPublisher(cfg, transactional_id=f"{cfg.producer.transactional_id}-backfill")
    service.publisher.init()
    total = 0
    t0 = time.monotonic()
    try:
        for q in queries:
            grid = _grid(q)
            windows = pending_windows(align_down(start_ms, grid), align_up(end_ms, grid),
                                      chunk_ms(q.mode, q.step_ms, 3_600_000 if q.mode == "raw" else 0))
            for i, window in enumerate(windows):
                total += service.publish_window(q, window, advance_watermark=False)
                _progress(i + 1, len(windows), q.name)
    finally:
        service.close()
    log.info("backfill_done samples=%d seconds=%.1f", total, time.monotonic() - t0)
    return 0
