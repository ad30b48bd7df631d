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


def report(producer_url: str, consumer_urls: list[str]) -> str:
    lines = []
    p = _scrape(producer_url)
    if p is None:
        lines.append(f"producer   not reachable at {producer_url}")
    else:
        lines.append(f"producer   extracted={_sum(p, 'healthpipe_producer_samples_extracted_total'):.0f} "
                     f"published={_sum(p, 'healthpipe_producer_samples_published_total'):.0f} "
                     f"transactions={_sum(p, 'healthpipe_producer_transactions_total'):.0f} "
                     f"query_errors={_sum(p, 'healthpipe_producer_query_errors_total'):.0f}")
        for (name, labels), value in sorted(p.items()):
            if name == "healthpipe_producer_watermark_age_seconds":
                lines.append(f"           watermark age {dict(labels)['query']}: {value:.0f}s")
    for url in consumer_urls:
        c = _scrape(url)
        if c is None:
            continue
        dropped = {dict(lb)["reason"]: v for (n, lb), v in c.items()
                   if n == "healthpipe_consumer_samples_dropped_total"}
        lines.append(f"consumer   {url.split('//')[1].split('/')[0]} "
                     f"consumed={_sum(c, 'healthpipe_consumer_samples_consumed_total'):.0f} "
                     f"written={_sum(c, 'healthpipe_consumer_samples_written_total'):.0f} "
                     f"dead_letters={_sum(c, 'healthpipe_consumer_dead_letters_total'):.0f} "
                     f"lag={_sum(c, 'healthpipe_consumer_lag'):.0f} "
                     f"paused={_sum(c, 'healthpipe_consumer_paused'):.0f} "
                     f"dropped={ {k: int(v) for k, v in dropped.items()} }")
    if not any(line.startswith("consumer") for line in lines):
        lines.append("consumer   none reachable at " + ", ".join(consumer_urls))
    return "\n".join(lines)
