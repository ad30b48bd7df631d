"""B8c: the feature server's fill from InfluxDB, in-process: how long it takes and what it leaves resident.

    python -m bench.features_fill [--series 10000] [--code /tmp/base]

`--code DIR` fills with another checkout's healthpipe (`git worktree add /tmp/base <commit>`), same harness: run the
two one after the other for a before/after.

`--series` series × 5 minutes (1 sample a second) written to a fresh bucket as the consumer writes them (B8's
history), then one StreamFeed._fill() of an empty store, as `features serve` does on start. The process's RSS (and
its anonymous part) after the imports a server makes, before the fill and after it; whether pandas and pyarrow were
loaded (by the server's imports, or by the fill).
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


def memory() -> dict[str, int]:
    """This process's RSS (bench.support.status_mb's reading, taken here before the harness's own modules load)."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {k: int(status[k].split()[0]) // 1024 for k in ("VmRSS", "RssAnon")}


def loaded() -> list[str]:
    return sorted(m for m in ("pandas", "pyarrow") if m in sys.modules)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--code", type=Path, help="another checkout's healthpipe (put first on sys.path)")
    args = parser.parse_args()

    import healthpipe.ml.serve  # noqa: F401 (what a server imports before its fill)
    from healthpipe.ml.stream_feed import StreamFeed
    from healthpipe.ml.stream_store import StreamStore

    after_imports, loaded_by_imports = memory(), loaded()
    # the harness's own modules after that measurement (they load no pandas or pyarrow of their own)
    from bench.features import QUERY, history
    from bench.support import RESULTS
    from tests.support.influx import temporary_bucket
    from tests.support.services import native_or_exit

    services = native_or_exit()
    now_ms = int(time.time()) * 1000
    with temporary_bucket(services.config().load.influxdb, "bench-fill") as bucket:
        cfg = services.config(extract={"queries": [QUERY]}, influxdb={"bucket": bucket.bucket},
                              transform={"valid_metrics": []}, features={"stream_span": "10m"})
        history(cfg, args.series, now_ms)
        gc.collect()
        before = memory()
        store = StreamStore(cfg.features.stream_span.ms, cfg.features.stream_max_series)
        t0 = time.perf_counter()
        StreamFeed(cfg, store)._fill()
        seconds = time.perf_counter() - t0
        after = memory()
    result = {"series": args.series, "code": str(args.code) if args.code else None, "fill_s": round(seconds, 2),
              "series_filled": len(store), "rss_after_imports_mb": after_imports,
              "loaded_by_imports": loaded_by_imports, "rss_before_fill_mb": before, "rss_after_fill_mb": after,
              "fill_left_mb": after["VmRSS"] - before["VmRSS"], "loaded_after_fill": loaded()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"features-fill-{int(time.time())}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
