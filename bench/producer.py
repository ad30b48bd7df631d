"""B1: the producer against the bare fetch of the same Prometheus API responses.

Both read the same raw windows (every series of `job="prometheus"`, Prometheus scraping itself every second,
over the last `--minutes`): the bare fetch only POSTs the query and parses the JSON; the producer also turns
the answer into messages and publishes them in Kafka transactions. Completeness: the topic must hold exactly
the samples the bare fetch counted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import orjson
import requests

from common.config import QuerySettings
from producer.service import ProducerService
from producer.windows import Window, pending_windows
from tests.support.kafka import read_topic
from tests.support.services import native_or_exit

QUERY = QuerySettings(name="self", promql='{job="prometheus"}', mode="raw", metric_type="gauge")


def bare_fetch(url: str, windows: list[Window]) -> tuple[int, float]:
    session = requests.Session()
    t0 = time.perf_counter()
    samples = 0
    for w in windows:
        body = session.post(f"{url}/api/v1/query", data={"query": f"{QUERY.promql}[{w.end_ms - w.start_ms}ms]",
                                                         "time": f"{w.end_ms / 1000:.3f}"}, timeout=60).json()
        samples += sum(1 for r in body["data"]["result"] for ts, _ in r["values"]
                       if w.start_ms < round(float(ts) * 1000) <= w.end_ms)
    return samples, time.perf_counter() - t0


def producer_run(services, windows: list[Window]) -> tuple[int, float, object]:
    cfg = services.config(extract={"queries": [QUERY.model_dump()]}, producer={"metrics_port": 0})
    service = ProducerService(cfg)
    service.initialize()
    t0 = time.perf_counter()
    samples = sum(service.publish_window(QUERY, w, advance_watermark=False) for w in windows)
    seconds = time.perf_counter() - t0
    service.close()
    return samples, seconds, cfg


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    services = native_or_exit()
    end = (int(time.time()) - 5) * 1000
    windows = pending_windows(end - args.minutes * 60_000, end, 60_000)
    rows = []
    for _ in range(args.runs):
        fetched, fetch_s = bare_fetch(services.prometheus_url, windows)
        published, prod_s, cfg = producer_run(services, windows)
        on_topic = sum(len(orjson.loads(m.value())["samples"]) for m in read_topic(cfg, cfg.kafka.topic))
        assert published == fetched == on_topic, (published, fetched, on_topic)
        rows.append({"samples": fetched, "bare_fetch_per_s": fetched / fetch_s, "producer_per_s": published / prod_s,
                     "ratio": (published / prod_s) / (fetched / fetch_s)})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"median_samples": statistics.median(r["samples"] for r in rows),
                      "median_bare_fetch_per_s": statistics.median(r["bare_fetch_per_s"] for r in rows),
                      "median_producer_per_s": statistics.median(r["producer_per_s"] for r in rows),
                      "median_ratio": statistics.median(r["ratio"] for r in rows)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
