"""Every per-series cache has a bound that holds under churn (issue #29): nothing grows with the series ever seen."""

import pandas as pd
import pytest
from prometheus_client import generate_latest

from healthpipe.common.bounded import BoundedCache
from healthpipe.common.config import HealthpipeConfig, TransformSettings
from healthpipe.common.messages import SeriesWindow
from healthpipe.consumer.metrics import ConsumerMetrics
from healthpipe.ml.window_cache import WindowCache
from healthpipe.sinks.influx.transformer import DataTransformer, series_key

NOW_MS = 1_800_000_000_000


def test_least_recently_used_goes_first_and_every_eviction_is_counted():
    cache: BoundedCache[str, int] = BoundedCache("t", 2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3
    assert (len(cache), cache.evictions) == (2, 1)
    cache.put("c", 4)  # an update is not an eviction
    assert (len(cache), cache.evictions, cache.get("c")) == (2, 1, 4)


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError, match="cache t: limit must be at least 1"):
        BoundedCache("t", 0)


def churn(generations: int, series: int, replaced: float):
    """Windows of a stream where `replaced` of the series get new label values every generation."""
    stable = int(series * (1 - replaced))
    for g in range(generations):
        names = [f"s{i}" for i in range(stable)] + [f"g{g}-{i}" for i in range(series - stable)]
        yield [SeriesWindow("availability", "availability", {"__name__": "up", "job": "j", "instance": n},
                            0, NOW_MS, [(NOW_MS - 1 - g, "1")]) for n in names]


def test_the_consumers_tag_cache_stays_at_its_limit_under_churn_and_writes_the_same_lines():
    bounded = DataTransformer(TransformSettings(series_cache_size=100), clock=lambda: NOW_MS / 1000)
    unbounded = DataTransformer(TransformSettings(series_cache_size=10**9), clock=lambda: NOW_MS / 1000)
    sizes = []
    for batch in churn(generations=30, series=80, replaced=0.1):  # 80 live series, 8 replaced per generation
        assert bounded.transform(batch).lines == unbounded.transform(batch).lines
        sizes.append(len(bounded.prefix_cache))
    assert max(sizes) == 100
    assert len(unbounded.prefix_cache) == 72 + 30 * 8  # what an unbounded cache keeps: every series ever seen
    assert bounded.prefix_cache.evictions == 72 + 30 * 8 - 100
    # the series still alive were never pushed out (least recently used, not first in): only the gone ones were
    stable = next(churn(generations=1, series=80, replaced=0.1))[:72]
    assert all(bounded.prefix_cache.get(series_key(w)) is not None for w in stable)


def test_the_consumer_exports_its_caches_size_limit_and_evictions():
    metrics = ConsumerMetrics()
    transformer = DataTransformer(TransformSettings(series_cache_size=2), clock=lambda: NOW_MS / 1000)
    metrics.caches.caches = [transformer.prefix_cache]
    for batch in churn(generations=1, series=5, replaced=0):
        transformer.transform(batch)
    text = generate_latest(metrics.registry).decode()
    assert 'healthpipe_cache_entries{cache="series_prefixes"} 2.0' in text
    assert 'healthpipe_cache_limit{cache="series_prefixes"} 2.0' in text
    assert 'healthpipe_cache_evictions_total{cache="series_prefixes"} 3.0' in text


def test_the_feature_servers_window_cache_keeps_at_most_its_selectors():
    cfg = HealthpipeConfig(features={"window_cache_selectors": 3})
    cache = WindowCache(cfg)
    for i in range(10):
        entry = cache._entry(("availability", (("instance", f"h:{i}"),)), NOW_MS)
        entry.frame = pd.DataFrame({"ts": [NOW_MS], "value": [1.0]})
    assert len(cache.entries) == 3 and cache.entries.evictions == 7
    assert ("availability", (("instance", "h:9"),)) in cache.entries
