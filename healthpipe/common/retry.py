"""Waiting between attempts: one backoff rule for every retry healthpipe makes."""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from healthpipe.common.errors import Retryable

log = logging.getLogger(__name__)
T = TypeVar("T")


def backoff(attempt: int, retry_after: float | None = None, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds to wait before retry `attempt` (0-based): Retry-After if the server said, else full jitter."""
    if retry_after is not None:
        return min(retry_after, 300.0)
    return random.uniform(0, min(cap, base * 2 ** attempt))


def retry(step: Callable[[], T], what: str, give_up_after: float | None = None, cap: float = 10.0,
          stop: threading.Event | None = None) -> T:
    """Call `step` until it stops raising Retryable; anything else propagates at once.

    Gives up (re-raising the last Retryable) after `give_up_after` seconds, or when `stop` is set."""
    deadline = None if give_up_after is None else time.monotonic() + give_up_after
    for attempt in itertools.count():
        try:
            return step()
        except Retryable as exc:
            delay = backoff(attempt, exc.retry_after, cap=cap)
            if (deadline is not None and time.monotonic() + delay > deadline) or (stop and stop.is_set()):
                raise
            # the event name in the template (not an argument), so the log line keeps its fields
            log.warning(f"{what}_failed attempt=%d retry_in=%.1fs error=%s", attempt + 1, delay, exc)
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)
    raise AssertionError("unreachable")
