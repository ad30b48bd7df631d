"""Producer against the real stack: exact windows, resume without gap or duplicate, faults, chunking."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter

import orjson
import pytest
import requests
import yaml

from healthpipe.common.errors import ConfigError
from healthpipe.producer.service import ProducerService
from tests.support.faults import FaultProxy
from tests.support.kafka import read_topic
from tests.support.pipeline import free_port, start_process, write_config

RAW_UP = {"name": "availability", "promql": 'up{job="test-app"}', "mode": "raw", "metric_type": "availability"}


def published_samples(cfg) -> list[tuple[tuple, int, str]]:
    """(series labels, timestamp, value) of every committed sample on the data topic."""
    return published(cfg)[0]


def published(cfg) -> tuple[list[tuple[tuple, int, str]], int]:
    """The committed samples, and the start of the earliest window they came from."""
    out, first_start = [], None
    for msg in read_topic(cfg, cfg.kafka.topic):
        doc = orjson.loads(msg.value())
        labels = tuple(sorted(doc["labels"].items()))
        out.extend((labels, ts, v) for ts, v in doc["samples"])
        first_start = doc["window"][0] if first_start is None else min(first_start, doc["window"][0])
    return out, first_start


def prometheus_raw(url: str, selector: str, start_ms: int, end_ms: int) -> set[tuple[tuple, int, str]]:
    """The stored samples in (start, end], read directly from Prometheus' API."""
    span_s = (end_ms - start_ms) // 1000 + 2
    body = requests.get(f"{url}/api/v1/query", params={"query": f"{selector}[{span_s}s]", "time": end_ms / 1000},
                        timeout=30).json()
    return {(tuple(sorted(r["metric"].items())), round(float(ts) * 1000), v)
            for r in body["data"]["result"] for ts, v in r["values"] if start_ms < round(float(ts) * 1000) <= end_ms}


def wait_for_scrapes(services, seconds=5):
    """Prometheus must hold `seconds` of demo-app samples (on a stack started just now, wait for them)."""
    deadline = time.monotonic() + seconds + 60
    while time.monotonic() < deadline:
        query = f'count_over_time(up{{job="test-app"}}[{seconds + 5}s])'
        body = requests.get(f"{services.prometheus_url}/api/v1/query", params={"query": query}, timeout=10).json()
        if body["data"]["result"] and float(body["data"]["result"][0]["value"][1]) >= seconds:
            return
        time.sleep(1)
    pytest.fail("Prometheus has no demo-app samples")


def test_raw_samples_equal_a_direct_prometheus_read(services):
    wait_for_scrapes(services)
    cfg = services.config(extract={"queries": [RAW_UP], "max_backfill": "2m", "lag_seconds": 2})
    service = ProducerService(cfg)
    service.initialize()
    assert service.watermarks == {}  # fresh topics: no watermark yet
    service.run_single_cycle()
    end = service.watermarks["availability"]
    service.close()
    samples, start = published(cfg)
    assert samples, "no samples published"
    assert 117_000 <= end - start <= 119_000  # from now - max_backfill (2m) to now - lag (2s)
    direct = prometheus_raw(services.prometheus_url, 'up{job="test-app"}', start, end)
    assert Counter(samples) == Counter(direct), "topic differs from Prometheus for the same window"


def test_resume_from_watermark_leaves_no_gap_and_no_duplicate(services):
    wait_for_scrapes(services)
    cfg = services.config(extract={"queries": [RAW_UP], "max_backfill": "30s", "lag_seconds": 1})
    first = ProducerService(cfg)
    first.initialize()
    first.run_single_cycle()
    first.close()
    time.sleep(4)
    second = ProducerService(cfg)  # a restart: same transactional id, watermark from Kafka
    second.initialize()
    assert second.watermarks == first.watermarks
    second.run_single_cycle()
    end = second.watermarks["availability"]
    second.close()
    samples, begin = published(cfg)
    keys = [(labels, ts) for labels, ts, _ in samples]
    assert len(keys) == len(set(keys)), "duplicate (series, timestamp)"
    assert set(samples) == prometheus_raw(services.prometheus_url, 'up{job="test-app"}', begin, end)


def test_prometheus_failing_then_recovering_leaves_no_gap(services):
    wait_for_scrapes(services)
    proxy = FaultProxy(services.prometheus_url)
    try:
        cfg = services.config(extract={"queries": [RAW_UP], "max_backfill": "20s", "lag_seconds": 1,
                                       "prometheus_url": proxy.url, "max_retries": 1})
        service = ProducerService(cfg)
        service.initialize()
        service.run_single_cycle()
        before = service.watermarks["availability"]
        proxy.fail_status = 500
        time.sleep(3)
        assert service.run_single_cycle() == {"availability": 0}
        assert service.watermarks["availability"] == before  # a failed window never advances the watermark
        assert service.metrics.registry.get_sample_value(
            "healthpipe_producer_query_errors_total", {"query": "availability", "stage": "prometheus"}) == 1
        proxy.fail_status = None
        service.run_single_cycle()
        end = service.watermarks["availability"]
        assert end > before + 2000
        service.close()
    finally:
        proxy.close()
    samples, begin = published(cfg)
    assert set(samples) == prometheus_raw(services.prometheus_url, 'up{job="test-app"}', begin, end)
    assert len(samples) == len(set(samples))


def test_range_query_over_11000_steps_is_chunked_and_complete(services):
    query = {"name": "constant", "promql": "vector(1)", "mode": "range", "step": "1s", "metric_type": "gauge"}
    cfg = services.config(extract={"queries": [query], "max_backfill": "4h", "lag_seconds": 0},
                          transform={"valid_metrics": []})
    requests_seen = []
    service = ProducerService(cfg)
    service.extractor.on_request = lambda path, s, ok: requests_seen.append(path)
    service.initialize()
    requests_seen.clear()
    service.run_single_cycle()
    end = service.watermarks["constant"]
    service.close()
    samples = published_samples(cfg)
    timestamps = sorted(ts for _, ts, _ in samples)
    assert len(timestamps) == 4 * 3600  # every 1s step of the 4h window (start, end], once
    assert timestamps == list(range(end - 4 * 3600 * 1000 + 1000, end + 1, 1000))
    assert requests_seen.count("/api/v1/query_range") == 2  # 14,400 points > 11,000: two requests


def test_invalid_promql_is_a_config_error_naming_the_query(services):
    cfg = services.config(extract={"queries": [{"name": "broken", "promql": "sum(rate(", "mode": "range"}]})
    with pytest.raises(ConfigError, match="broken"):
        ProducerService(cfg).initialize()
    cfg = services.config(extract={"queries": [{"name": "not_a_selector", "promql": "sum(up)", "mode": "raw"}]})
    with pytest.raises(ConfigError, match="not_a_selector"):
        ProducerService(cfg).initialize()


def kill_9_mid_transaction(cmd: list[str], env: dict, port: int, cfg, attempts: int = 5,
                           after_commits: int = 10) -> dict:
    """Start the producer and, once it has committed `after_commits` windows (so its watermark keeps ahead of
    max_backfill), freeze it (SIGSTOP) the moment its /metrics say a transaction is open. If Kafka shows that
    transaction holding records (last stable offset < high watermark), SIGKILL it and prove from Kafka that the
    kill left it unfinished; otherwise (the records were not sent yet, or the commit landed first) let it go on
    and try the next transaction. Freezing before killing makes each try cost one window, not one process."""
    from tests.support.kafka import open_transactions
    from tests.support.pipeline import scrape

    topics = [cfg.kafka.topic, cfg.kafka.watermark_topic]
    for _ in range(attempts):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                m = scrape(port)
                if m.get("healthpipe_producer_transaction_open") != 1 or \
                        m.get("healthpipe_producer_transactions_total", 0) < after_commits:
                    time.sleep(0.002)
                    continue
                proc.send_signal(signal.SIGSTOP)
                if open_transactions(cfg, topics):
                    proc.kill()
                    proc.wait()
                    time.sleep(1)  # a commit the broker was still completing would show by now
                    left_open = open_transactions(cfg, topics)
                    if left_open:
                        return left_open
                    break
                proc.send_signal(signal.SIGCONT)
        finally:
            proc.kill()
            proc.wait()
    raise AssertionError(f"no kill in {attempts} runs left a transaction open: the test proves nothing")


def test_kill_9_mid_transaction_then_restart_leaves_no_gap_and_no_duplicate(services, tmp_path):
    """SIGKILL the producer process inside a transaction while it backfills, three times, then finish."""
    from tests.support.pipeline import free_port, process_env

    wait_for_scrapes(services, seconds=90)  # every window of the backfill holds samples, the killed ones too
    port = free_port()
    cfg = services.config(extract={"queries": [RAW_UP], "max_backfill": "90s", "lag_seconds": 1,
                                   "raw_chunk": "1s"}, producer={"metrics_port": port})
    config_file = tmp_path / "healthpipe.yaml"
    config_file.write_text(yaml.safe_dump(orjson.loads(cfg.model_dump_json(
        exclude={"load": {"influxdb": {"token"}}}))))
    env = process_env(cfg)
    cmd = [sys.executable, "-m", "healthpipe", "producer", "--config", str(config_file), "--once"]
    for _ in range(3):
        assert kill_9_mid_transaction(cmd, env, port, cfg)  # records of an unfinished transaction on the topic
    for _ in range(3):  # each --once run publishes at most 100 windows: finish the backfill
        assert subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=300).returncode == 0
    service = ProducerService(cfg.model_copy(update={"producer": cfg.producer.model_copy(
        update={"metrics_port": 0})}))
    service.initialize()
    end = service.watermarks["availability"]
    service.close()
    samples, begin = published(cfg)
    keys = [(labels, ts) for labels, ts, _ in samples]
    assert len(keys) == len(set(keys)), f"{len(keys) - len(set(keys))} duplicate (series, timestamp)"
    assert set(samples) == prometheus_raw(services.prometheus_url, 'up{job="test-app"}', begin, end)


def test_the_plans_four_core_queries_all_return_data(services):
    """get_basic_metrics(): availability, request rate, p95 latency and error rate from the demo app."""
    from healthpipe.producer.extractor import PrometheusExtractor

    wait_for_scrapes(services, seconds=20)  # rate(...[1m]) needs a few scrapes
    results = PrometheusExtractor(services.prometheus_url).get_basic_metrics(lookback="1m")
    assert set(results) == {"availability", "request_rate", "latency_p95", "error_rate"}
    for name, series in results.items():
        assert isinstance(series, list) and series and all(s.samples for s in series), name


def test_an_answer_with_warnings_is_retried_never_published(services):
    """Prometheus may answer `success` with `warnings` when data may be partial (a failed remote read, say):
    the window is not published and the watermark stays, so nothing is skipped; when the warning is gone
    the same span is published exactly."""
    wait_for_scrapes(services)
    proxy = FaultProxy(services.prometheus_url)
    try:
        cfg = services.config(extract={"queries": [RAW_UP], "max_backfill": "20s", "lag_seconds": 1,
                                       "prometheus_url": proxy.url})
        service = ProducerService(cfg)
        service.initialize()
        service.run_single_cycle()
        before = service.watermarks["availability"]
        proxy.fail_path_prefix = "/api/v1/query"
        proxy.rewrite = lambda body: {**body, "warnings": ["remote read: partial response (injected)"]}
        time.sleep(3)
        assert service.run_single_cycle() == {"availability": 0}
        assert service.watermarks["availability"] == before
        assert service.metrics.registry.get_sample_value(
            "healthpipe_producer_query_errors_total", {"query": "availability", "stage": "prometheus"}) == 1
        proxy.rewrite = None
        service.run_single_cycle()
        end = service.watermarks["availability"]
        service.close()
    finally:
        proxy.close()
    assert end > before + 2000
    samples, begin = published(cfg)
    assert set(samples) == prometheus_raw(services.prometheus_url, 'up{job="test-app"}', begin, end)
    assert len(samples) == len(set(samples))


def test_a_producer_clock_ahead_of_prometheus_skips_nothing(services):
    """Our clock 2 minutes ahead: windows stop at Prometheus' own now - lag, so the samples Prometheus has not
    scraped yet are read by a later cycle instead of being skipped for good."""
    wait_for_scrapes(services)
    cfg = services.config(extract={"queries": [RAW_UP], "max_backfill": "30s", "lag_seconds": 1})
    service = ProducerService(cfg, clock=lambda: time.time() + 120)
    service.initialize()
    service.run_single_cycle()
    first = service.watermarks["availability"]
    assert first <= time.time() * 1000  # not in Prometheus' future
    time.sleep(4)
    service.run_single_cycle()
    end = service.watermarks["availability"]
    service.close()
    assert end > first
    samples, begin = published(cfg)
    assert set(samples) == prometheus_raw(services.prometheus_url, 'up{job="test-app"}', begin, end)
    assert sum(1 for _, ts, _ in samples if first < ts <= end) >= 3  # the second cycle read what came after


def test_once_exits_3_within_extract_timeout_when_prometheus_is_unreachable(services, tmp_path):
    """A one-shot run must end: with nothing listening at extract.prometheus_url, `producer --once` exits 3
    (a service could not be reached) after extract.timeout, not never."""
    cfg = services.config(extract={"prometheus_url": f"http://127.0.0.1:{free_port()}", "timeout": "4s"})
    t0 = time.monotonic()
    proc = start_process("producer", write_config(cfg, tmp_path / "c.yaml"), cfg, "--once", log=tmp_path / "p.log")
    try:
        # extract.timeout, plus the process's start-up and one request: waiting longer only slows the mutant down
        code = proc.wait(timeout=4 + 15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"producer --once still running {time.monotonic() - t0:.0f} s after start (extract.timeout 4 s)")
    finally:
        proc.kill()
    assert code == 3, (tmp_path / "p.log").read_text()[-2000:]
    assert "prometheus" in (tmp_path / "p.log").read_text().lower()


# Label values a user's series may carry: every character PromQL strings and RE2 give a meaning to.
HOSTILE_INSTANCES = ['quote"d', "back\\slash", "re.ge(x)|*+?[]{}^$", "new\nline", "ünï", 'x"}or{y="1', ""]


def split_data_set(path, start_s: int, points: int) -> dict[tuple, list[int]]:
    """60 series of `split_metric` every second (hostile instance values, one series without `instance`) as
    OpenMetrics; returns each series' labels and timestamps (ms)."""
    def escape(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    instances = [f"node-{i}" for i in range(60 - len(HOSTILE_INSTANCES))] + HOSTILE_INSTANCES
    expected = {}
    with path.open("w") as f:
        f.write("# TYPE split_metric gauge\n")
        for i, instance in enumerate(instances):
            labels = {"__name__": "split_metric", "job": "split", **({"instance": instance} if instance else {})}
            text = ",".join(f'{k}="{escape(v)}"' for k, v in labels.items() if k != "__name__")
            f.writelines(f"split_metric{{{text}}} {i} {start_s + t}\n" for t in range(points))
            expected[tuple(sorted(labels.items()))] = [(start_s + t) * 1000 for t in range(points)]
        f.write("# EOF\n")
    return expected


@pytest.mark.parametrize("max_samples, splits, per_read, split_label", [
    (500, {"time"}, 50_000, "instance"), (40, {"time", "series"}, 50_000, "instance"), (1000, {"time"}, 25, "job")])
def test_a_window_too_large_for_prometheus_is_split_and_published_whole(services, tmp_path, max_samples, splits,
                                                                        per_read, split_label):
    """Prometheus with a lowered --query.max-samples refuses the producer's window; the producer splits it (in
    time; at 40 samples even 1 s of 60 series is too much, so by series too, through hostile label values) and
    publishes every sample exactly once, in order of windows, the watermark at the end. With
    extract.max_series_per_read 25 the 60 series are read in groups from the start, inside each window's open
    transaction; grouped by `job`, whose one value holds all 60 series, the group is refused and cannot be halved:
    the window fails inside its open transaction, which is aborted, and the window is halved in time."""
    from bench.producer import BlockPrometheus
    from healthpipe.producer.metrics import ProducerMetrics

    points, end_s = 300, int(time.time()) // 60 * 60 - 600
    start_s = end_s - points + 1
    expected = split_data_set(tmp_path / "data.om", start_s, points)
    prom = BlockPrometheus(tmp_path, tmp_path / "data.om", flags=(f"--query.max-samples={max_samples}",))
    try:
        query = {"name": "split", "promql": 'split_metric{job="split"}', "mode": "raw", "metric_type": "gauge"}
        cfg = services.config(extract={"prometheus_url": prom.url, "queries": [query], "max_backfill": "30d",
                                       "raw_chunk": "30m", "lag_seconds": 0, "max_series_per_read": per_read,
                                       "split_label": split_label},
                              transform={"valid_metrics": []})
        # the fault hits: the producer's own window is refused whole
        whole = requests.post(f"{prom.url}/api/v1/query", data={"query": f'split_metric{{job="split"}}[{points}s]',
                                                               "time": end_s}, timeout=30)
        assert whole.status_code == 422 and "too many samples" in whole.json()["error"]
        metrics = ProducerMetrics()
        service = ProducerService(cfg, metrics=metrics, clock=lambda: end_s)
        service.initialize()
        service.watermarks["split"] = (start_s - 1) * 1000
        while service.watermarks["split"] < end_s * 1000:
            before = service.watermarks["split"]
            service.run_single_cycle()
            assert service.watermarks["split"] > before, "a cycle made no progress"
        service.close()
    finally:
        prom.close()
    got: dict[tuple, list[int]] = {}
    for labels, ts, _ in published_samples(cfg):
        got.setdefault(labels, []).append(ts)
    assert got == expected  # every series (hostile values, no instance) and sample, once, in time order
    by = {s.labels["by"] for m in metrics.registry.collect() if m.name == "healthpipe_producer_window_splits"
          for s in m.samples if s.name.endswith("_total") and s.value > 0}
    assert by == splits
    group_reads = metrics.registry.get_sample_value("healthpipe_producer_series_group_reads_total",
                                                    {"query": "split"}) or 0
    aborted = metrics.registry.get_sample_value("healthpipe_producer_transactions_total", {"outcome": "aborted"}) or 0
    # read in groups from the start only when a window has more series than max_series_per_read
    assert (group_reads > 0) == ("series" in splits or per_read < 60), group_reads
    if per_read < 60:
        assert group_reads >= 2 and aborted >= 1, (group_reads, aborted)  # groups read; a refused one aborted
