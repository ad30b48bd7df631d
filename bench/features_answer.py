"""B8b: one all-series /features answer from the stream store, in-process (no HTTP, no feed thread, no other
process): what building the answer itself costs, and what the cyclic GC adds to its p99.

    python -m bench.features_answer [--series 1000] [--requests 1000] [--code /tmp/base]

`--code DIR` answers with another checkout's healthpipe (`git worktree add /tmp/base <commit>`), same harness.

A StreamStore holding `--series` series × 5 minutes (1 sample a second, filled through StreamFeed.apply, the
consumer's transform), then `--requests` all-series answers (stream_features + the JSON encoding the server does),
timed one by one, in three cases:
- memo: the same `at` every time (the windows repeat: what most requests between two deliveries see);
- moving: `at` moves by whole seconds, so every window changes (every request recomputes every series);
- moving, gc disabled: the same with the cyclic collector off (what the collector's passes add);
and each case once more after `gc.freeze()` of the filled store (what the feature server does after a fill).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

if __name__ == "__main__" and "--code" in sys.argv:  # before anything imports healthpipe
    sys.path.insert(0, str(Path(sys.argv[sys.argv.index("--code") + 1]).resolve()))

import msgspec  # noqa: E402

from bench.features import QUERY, labels, value_at  # noqa: E402
from bench.support import RESULTS  # noqa: E402
from healthpipe.common.config import HealthpipeConfig  # noqa: E402
from healthpipe.common.messages import SeriesWindow  # noqa: E402
from healthpipe.ml import serve  # noqa: E402
from healthpipe.ml.stream_feed import StreamFeed  # noqa: E402
from healthpipe.ml.stream_store import StreamStore  # noqa: E402


def filled_store(cfg: HealthpipeConfig, n: int, now_ms: int) -> StreamStore:
    store = StreamStore(cfg.features.stream_span.ms, 200_000)
    store.reset(now_ms - 600_000)
    feed = StreamFeed(cfg, store)
    for first in range(0, n, 1000):
        feed.apply([SeriesWindow("bench", "gauge", labels(s), 0, 0,
                                 [(now_ms - i * 1000, repr(value_at(s, now_ms - i * 1000))) for i in range(300, 0, -1)])
                    for s in range(first, min(n, first + 1000))])
    store.filled()
    return store


def answer(cfg: HealthpipeConfig, store: StreamStore, at_ms: int) -> bytes:
    request = serve.parse_request(cfg, "bench", {}, "5m", str(at_ms / 1000))
    (series,) = serve.stream_features(cfg, store, [request])
    return msgspec.json.encode({"at": request.at_ms, "window": request.window, "series": series,
                                "freshness": {"source": "stream", "offsets": {"0": 1}, "staleness_s": 0.1}})


def timed(cfg: HealthpipeConfig, store: StreamStore, ats: list[int]) -> dict:
    took = []
    for at in ats:
        t0 = time.perf_counter()
        answer(cfg, store, at)
        took.append(time.perf_counter() - t0)
    took.sort()
    return {"p50_ms": round(took[len(took) // 2] * 1000, 2), "p99_ms": round(took[int(len(took) * 0.99)] * 1000, 2)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--code", type=Path, help="another checkout's healthpipe (put first on sys.path)")
    args = parser.parse_args()
    cfg = HealthpipeConfig.model_validate({"extract": {"queries": [QUERY]}, "transform": {"valid_metrics": []}})
    now = int(time.time()) * 1000
    store = filled_store(cfg, args.series, now)
    answer(cfg, store, now)  # warm: the first answer computes every window
    memo = [now] * args.requests
    moving = [now - 1000 * (i % 50) - 7 for i in range(args.requests)]
    rows = {}
    for frozen in (False, True):
        if frozen:
            gc.collect()
            gc.freeze()
        tag = "frozen" if frozen else "not frozen"
        rows[f"memo, {tag}"] = timed(cfg, store, memo)
        rows[f"moving, {tag}"] = timed(cfg, store, moving)
        gc.disable()
        rows[f"moving, gc disabled, {tag}"] = timed(cfg, store, moving)
        gc.enable()
    result = {"series": args.series, "requests": args.requests, "code": serve.__file__, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"features-answer-{int(time.time())}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
