"""B8e: the stream store's per-second trim, in-process: how long it holds the store's lock (what a request arriving
meanwhile waits) and its CPU a second.

    python -m bench.features_trim [--series 10000] [--seconds 30] [--code /tmp/base]

A StreamStore of `--series` series × 5 minutes (1 sample a second), then `--seconds` simulated seconds: one new
sample a series, then `trim()` as the feed does every second. The lock is wrapped to time every hold. `--code DIR`
measures another checkout's store (`git worktree add /tmp/base <commit>`), same harness.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

if __name__ == "__main__" and "--code" in sys.argv:  # before anything imports healthpipe
    sys.path.insert(0, str(Path(sys.argv[sys.argv.index("--code") + 1]).resolve()))

import numpy as np  # noqa: E402

from bench.support import RESULTS  # noqa: E402
from healthpipe.ml.stream_store import StreamStore  # noqa: E402

NOW = 1_800_000_000_000


class TimedLock:
    """A lock that records how long each hold lasted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.holds: list[float] = []
        self._t = 0.0

    def __enter__(self) -> None:
        self._lock.acquire()
        self._t = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.holds.append(time.perf_counter() - self._t)
        self._lock.release()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--code", type=Path, help="another checkout's healthpipe (put first on sys.path)")
    args = parser.parse_args()
    store = StreamStore(300_000, 1_000_000)
    store.reset(NOW - 300_000)
    ts = np.arange(NOW - 299_000, NOW + 1, 1000, dtype=np.int64)
    for i in range(args.series):
        store.add(f"s{i}", {"instance": f"node-{i}"}, ts, np.ones(len(ts)))
    store.filled()
    lock = TimedLock()
    store.lock = lock  # type: ignore[assignment]
    seconds, longest = [], []
    for k in range(1, args.seconds + 1):
        store.add_many((f"s{i}", {}, [NOW + 1000 * k], [1.0]) for i in range(args.series))
        lock.holds.clear()
        t0 = time.perf_counter()
        store.trim()
        seconds.append(time.perf_counter() - t0)
        longest.append(max(lock.holds))
    result = {"series": args.series, "seconds": args.seconds, "code": str(args.code) if args.code else None,
              "trim_ms_median": round(statistics.median(seconds) * 1000, 2),
              "trim_ms_mean": round(statistics.fmean(seconds) * 1000, 2),
              "longest_hold_ms_median": round(statistics.median(longest) * 1000, 2),
              "longest_hold_ms_max": round(max(longest) * 1000, 2)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"features-trim-{int(time.time())}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
