"""BoundedCache: a per-series (or per-selector) memory that never grows with the number of keys ever seen.

A metrics pipeline meets series churn (pods restart, label values change), so a cache keyed by series that only
ever grows is a slow memory leak. Every such cache in healthpipe is one of these: at most `limit` entries, the
least recently used pushed out first, with its size and evictions exported as metrics (CacheCollector) so an
operator sees a cache that thrashes (evictions climbing: raise the limit) before it costs CPU.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most `limit` entries; `get` refreshes an entry, `put` of a new key past the limit evicts the oldest."""

    def __init__(self, name: str, limit: int):
        if limit < 1:
            raise ValueError(f"cache {name}: limit must be at least 1, got {limit}")
        self.name = name
        self.limit = limit
        self.evictions = 0
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> V:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)
            self.evictions += 1
        return value

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __repr__(self) -> str:
        return f"BoundedCache({self.name!r}, {len(self)}/{self.limit}, evictions={self.evictions})"


class CacheCollector(Collector):
    """healthpipe_cache_entries / _limit / _evictions_total{cache=...} for a process's bounded caches."""

    def __init__(self, caches: Iterable[BoundedCache]):
        self.caches = list(caches)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        entries = GaugeMetricFamily("healthpipe_cache_entries", "Entries held by a bounded cache", labels=["cache"])
        limit = GaugeMetricFamily("healthpipe_cache_limit", "The most entries a bounded cache holds (config)",
                                  labels=["cache"])
        evictions = CounterMetricFamily("healthpipe_cache_evictions",
                                        "Entries pushed out of a bounded cache to stay within its limit",
                                        labels=["cache"])
        for cache in self.caches:
            entries.add_metric([cache.name], len(cache))
            limit.add_metric([cache.name], cache.limit)
            evictions.add_metric([cache.name], cache.evictions)
        yield from (entries, limit, evictions)
