"""`healthpipe status`: what a newcomer wants to see while data flows: per-stage counts, lag, watermark age."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families


def _scrape(url: str) -> dict[tuple[str, tuple], float] | None:
    try:
        text = requests.get(url, timeout=3).text
    except requests.RequestException:
        return None
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def _sum(samples: dict, name: str, **match: str) -> float:
    return sum(v for (n, labels), v in samples.items()
               if n == name and all(dict(labels).get(k) == val for k, val in match.items()))


def figures(producer_url: str, consumer_urls: list[str]) -> dict:
    """Per-stage counts read from each process's /metrics: the `producer` and `consumers` of `status --json`
    (docs/cli.md). A process that does not answer is null (producer) or absent (consumers)."""
    p = _scrape(producer_url)
    producer = None if p is None else {
        "url": producer_url,
        "extracted": _sum(p, "healthpipe_producer_samples_extracted_total"),
        "published": _sum(p, "healthpipe_producer_samples_published_total"),
        "transactions": _sum(p, "healthpipe_producer_transactions_total"),
        "query_errors": _sum(p, "healthpipe_producer_query_errors_total"),
        "watermark_age_seconds": {dict(labels)["query"]: value for (name, labels), value in sorted(p.items())
                                  if name == "healthpipe_producer_watermark_age_seconds"}}
    consumers = []
    for url in consumer_urls:
        c = _scrape(url)
        if c is None:
            continue
        consumers.append({
            "url": url,
            "consumed": _sum(c, "healthpipe_consumer_samples_consumed_total"),
            "written": _sum(c, "healthpipe_consumer_samples_written_total"),
            "dead_letters": _sum(c, "healthpipe_consumer_dead_letters_total"),
            "lag": _sum(c, "healthpipe_consumer_lag"),
            "paused": _sum(c, "healthpipe_consumer_paused"),
            "dropped": {dict(lb)["reason"]: v for (n, lb), v in c.items()
                        if n == "healthpipe_consumer_samples_dropped_total"}})
    return {"producer": producer, "consumers": consumers}


def report(producer_url: str, consumer_urls: list[str]) -> str:
    seen = figures(producer_url, consumer_urls)
    lines = []
    p = seen["producer"]
    if p is None:
        lines.append(f"producer   not reachable at {producer_url}")
    else:
        lines.append(f"producer   extracted={p['extracted']:.0f} published={p['published']:.0f} "
                     f"transactions={p['transactions']:.0f} query_errors={p['query_errors']:.0f}")
        for query, age in p["watermark_age_seconds"].items():
            lines.append(f"           watermark age {query}: {age:.0f}s")
    for c in seen["consumers"]:
        lines.append(f"consumer   {c['url'].split('//')[1].split('/')[0]} consumed={c['consumed']:.0f} "
                     f"written={c['written']:.0f} dead_letters={c['dead_letters']:.0f} lag={c['lag']:.0f} "
                     f"paused={c['paused']:.0f} dropped={ {k: int(v) for k, v in c['dropped'].items()} }")
    if not seen["consumers"]:
        lines.append("consumer   none reachable at " + ", ".join(consumer_urls))
    return "\n".join(lines)
