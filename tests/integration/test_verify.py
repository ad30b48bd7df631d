"""`healthpipe verify` against the real stack: real Prometheus data through the real pipeline into a bucket of the
test's own, then deletions, changes and outages that verify must name exactly."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager

import pytest
import requests
from influxdb_client.client.write_api import SYNCHRONOUS

from healthpipe.common.errors import Retryable
from healthpipe.producer.service import ProducerService
from healthpipe.verify import verification
from tests.integration.test_producer import RAW_UP, wait_for_scrapes
from tests.support import influx
from tests.support.influx import iso
from tests.support.pipeline import ConsumerThread, free_port, process_env, write_config

RATE = {"name": "request_rate", "promql": "sum by (method, path) (rate(http_requests_total[1m]))", "mode": "range",
        "step": "5s", "metric_type": "throughput"}
EDGES = {"name": "edges", "promql": "demo_label_edge_cases", "mode": "raw", "metric_type": "gauge"}
SPECIAL = {"name": "special", "promql": "demo_special_values", "mode": "raw", "metric_type": "gauge"}
CPU = {"name": "cpu", "promql": "app_cpu_usage_ratio", "mode": "raw", "metric_type": "gauge"}  # not whitelisted
QUERIES = [RAW_UP, RATE, EDGES, SPECIAL, CPU]


@pytest.fixture(scope="module")
def loaded(services):
    """~2 minutes of the demo app, published and loaded into a scratch bucket: (cfg, start_ms, end_ms)."""
    wait_for_scrapes(services, seconds=30)
    base = services.config()
    with influx.temporary_bucket(base.load.influxdb, "verify") as bucket:
        cfg = services.config(extract={"queries": QUERIES, "max_backfill": "2m", "lag_seconds": 5},
                              influxdb={"bucket": bucket.bucket},
                              transform={"valid_metrics": ["up", "request_rate", "demo_label_edge_cases",
                                                           "demo_special_values"]})
        producer = ProducerService(cfg)
        producer.initialize()
        producer.run_single_cycle()
        producer.close()
        ConsumerThread(cfg, until_idle=3).join()
        end = min(producer.watermarks.values())
        yield cfg, end - 90_000, end


def run(cfg, start, end, **kw):
    return verification.run(cfg, cfg.extract.queries, start, end, **kw)


def delete(s, start_ms: int, stop_ms: int, predicate: str) -> None:
    """InfluxDB's delete API (its stop is inclusive)."""
    requests.post(f"{s.url}/api/v2/delete", params={"org": s.org, "bucket": s.bucket}, timeout=30,
                  headers={"Authorization": f"Token {s.token.get_secret_value()}"},
                  json={"start": iso(start_ms), "stop": iso(stop_ms), "predicate": predicate}).raise_for_status()


@contextmanager
def split_data_loaded(services, tmp_path, points: int, bucket_prefix: str, flags=(), **extract):
    """tests/integration/test_producer.py's 60 `split_metric` series (hostile instance values, one without
    `instance`), `points` seconds of them, in a Prometheus of their own (started with `flags`), published by the
    real producer and loaded by the real consumer into a scratch bucket: (cfg, prom, expected, start_s, end_s)."""
    from bench.producer import BlockPrometheus
    from tests.integration.test_producer import split_data_set

    end_s = int(time.time()) // 60 * 60 - 600
    start_s = end_s - points + 1
    expected = split_data_set(tmp_path / "data.om", start_s, points)
    prom = BlockPrometheus(tmp_path, tmp_path / "data.om", flags=flags)
    try:
        with influx.temporary_bucket(services.config().load.influxdb, bucket_prefix) as bucket:
            query = {"name": "split", "promql": 'split_metric{job="split"}', "mode": "raw", "metric_type": "gauge"}
            cfg = services.config(extract={"prometheus_url": prom.url, "queries": [query], "max_backfill": "30d",
                                           "raw_chunk": "30m", "lag_seconds": 0, **extract},
                                  influxdb={"bucket": bucket.bucket}, transform={"valid_metrics": []})
            producer = ProducerService(cfg, clock=lambda: end_s)
            producer.initialize()
            producer.watermarks["split"] = (start_s - 1) * 1000
            while producer.watermarks["split"] < end_s * 1000:
                producer.run_single_cycle()
            producer.close()
            ConsumerThread(cfg, until_idle=3).join()
            yield cfg, prom, expected, start_s, end_s
    finally:
        prom.close()


def test_a_freshly_loaded_range_is_exact_and_counts_every_sample(loaded):
    cfg, start, end = loaded
    report = run(cfg, start, end)
    assert report.exact, report.as_json()
    by_name = {q.name: q for q in report.queries}
    assert by_name["availability"].expected >= 25  # 1 s scrapes (the demo app may be younger than 90 s)
    assert by_name["request_rate"].expected >= 18 * 4  # several series at a 5 s step grid
    assert by_name["edges"].expected >= 20 * 8  # every awkward label value, exact
    # NaN and ±Inf are dropped by the consumer and so never expected; the finite one is
    assert by_name["special"].expected == by_name["special"].present >= 20
    assert by_name["cpu"].expected == 0  # not on the whitelist: not expected, so never missing


def test_a_deleted_minute_of_one_series_is_named_with_its_exact_range_and_count(loaded):
    cfg, start, end = loaded
    s = cfg.load.influxdb
    victim = {"method": "GET", "path": "/api/users"}
    hole_start, hole_end = start + 20_000, start + 50_000
    before = influx.points(s, 'r.metric == "request_rate" and r.method == "GET" and r.path == "/api/users"',
                           start=iso(hole_start), stop=iso(hole_end + 1))
    assert len(before) >= 5
    delete(s, hole_start, hole_end, 'metric="request_rate" AND method="GET" AND path="/api/users"')
    gone = {round(r["_time"].timestamp() * 1000) for r in before}  # InfluxDB's delete includes its stop
    report = run(cfg, start, end)
    assert not report.exact
    q = {q.name: q for q in report.queries}["request_rate"]
    assert report.missing == q.missing == len(gone) and report.extra == report.mismatched == 0
    (series,) = q.series.values()
    assert {k: series.labels[k] for k in victim} == victim
    assert series.missing_ranges == [[min(gone), max(gone), len(gone)]]


def test_repair_republishes_from_prometheus_and_ends_exact(loaded, capsys):
    cfg, start, end = loaded
    s = cfg.load.influxdb
    delete(s, start + 60_000, start + 70_000, 'metric="up"')
    assert run(cfg, start, end).missing >= 5
    from healthpipe.verify.repair import repair

    consumer = ConsumerThread(cfg)  # the running pipeline loads what repair re-publishes
    try:
        actions = repair(cfg, cfg.extract.queries, run(cfg, start, end).queries, progress=False)
    finally:
        consumer.stop()
    assert any("availability" in a and "backfill" in a for a in actions)
    assert run(cfg, start, end).exact


def test_a_changed_value_is_mismatched_and_json_matches_the_table(loaded, tmp_path, monkeypatch, capsys):
    cfg, start, end = loaded
    s = cfg.load.influxdb
    point = influx.points(s, 'r.metric == "up"', start=iso(start), stop=iso(end))[10]
    ts = round(point["_time"].timestamp() * 1000)
    tags = ",".join(f"{k}={v}" for k, v in sorted(point.items())
                    if k not in {"result", "table", "_start", "_stop", "_time", "_value", "_field", "_measurement"})
    with influx.client(s) as c:
        c.write_api(write_options=SYNCHRONOUS).write(s.bucket, s.org, f"health_metrics,{tags} value=7.0 {ts}",
                                                     write_precision="ms")
    from healthpipe.cli import main

    monkeypatch.setenv("HEALTHPIPE_LOAD__INFLUXDB__TOKEN", s.token.get_secret_value())
    config_file = write_config(cfg, tmp_path / "c.yaml")
    args = ["verify", "--config", str(config_file), "--from", iso(start), "--to", iso(end), "--query", "availability"]
    assert main([*args, "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert (doc["exact"], doc["mismatched"], doc["missing"], doc["extra"]) == (False, 1, 0, 0)
    assert doc["queries"][0]["series"][0]["mismatched"] == 1
    assert main(args) == 1
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("availability"))
    q = doc["queries"][0]
    assert row.split() == ["availability", str(q["expected"]), str(q["present"]), "0", "0", "1", "0"]
    assert "NOT EXACT" in text


def test_influxdb_unreachable_exits_3_never_exact(loaded, tmp_path, monkeypatch, capsys):
    cfg, start, end = loaded
    dead = cfg.model_copy(update={"load": cfg.load.model_copy(update={"influxdb": cfg.load.influxdb.model_copy(
        update={"url": f"http://127.0.0.1:{free_port()}"})})})
    with pytest.raises(Retryable):
        run(dead, start, end)
    from healthpipe.cli import main

    monkeypatch.setenv("HEALTHPIPE_LOAD__INFLUXDB__TOKEN", cfg.load.influxdb.token.get_secret_value())
    code = main(["verify", "--config", str(write_config(dead, tmp_path / "d.yaml")), "--from", iso(start),
                 "--to", iso(end), "--json"])
    assert code == 3
    captured = capsys.readouterr()
    assert captured.out == "" and "InfluxDB" in captured.err


def test_bad_arguments_exit_2_naming_the_cause(loaded, tmp_path, monkeypatch, capsys):
    cfg, start, end = loaded
    from healthpipe.cli import main

    config_file = write_config(cfg, tmp_path / "c.yaml")
    assert main(["verify", "--config", str(config_file), "--from", iso(end), "--to", iso(start)]) == 2
    assert main(["verify", "--config", str(config_file), "--from", iso(start), "--to", iso(end),
                 "--query", "nope"]) == 2
    err = capsys.readouterr().err
    assert "must be after" in err and "no query named 'nope'" in err


def test_the_range_is_clipped_to_what_prometheus_still_holds(loaded):
    cfg, _, end = loaded
    report = run(cfg, 0, end)  # from 1970
    assert report.notes and "Prometheus holds nothing before" in report.notes[0]
    assert report.start_ms > 0


def test_python_m_verify_runs_as_its_own_package(loaded, tmp_path):
    import subprocess
    import sys

    cfg, start, end = loaded
    out = subprocess.run([sys.executable, "-m", "healthpipe", "verify",
                          "--config", str(write_config(cfg, tmp_path / "c.yaml")),
                          "--from", iso(end - 30_000), "--to", iso(end), "--query", "edges", "--json"],
                         env=process_env(cfg), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["exact"] and doc["queries"][0]["name"] == "edges" and doc["queries"][0]["expected"] >= 8 * 25


def test_continuous_mode_exports_what_it_found(loaded):
    from healthpipe.verify.service import ContinuousVerifier

    cfg, start, end = loaded
    v = ContinuousVerifier(cfg, [q for q in cfg.extract.queries if q.name == "edges"], every_s=30, delay_s=0,
                           clock=lambda: end / 1000)
    v.run_once()
    interval_end = end // 30_000 * 30_000
    reg = v.metrics.registry
    assert reg.get_sample_value("healthpipe_verify_missing_samples", {"query": "edges"}) == 0
    assert reg.get_sample_value("healthpipe_verify_last_exact_timestamp_seconds", {"query": "edges"}) == \
        interval_end / 1000
    assert reg.get_sample_value("healthpipe_verify_runs_total", {"outcome": "exact"}) == 1


def test_points_influxdb_refused_are_dead_lettered_not_missing(services):
    """verify's dead-letter accounting: InfluxDB (behind the fault proxy) answers 400 to every write, so the
    consumer bisects each batch down to single lines and dead-letters every point with its line of line protocol.
    verify, reading InfluxDB directly, finds every sample absent and moves each from `missing` to
    `dead_lettered`, per query and in total, and is not exact. Checked by breaking count_dead_letters (no move:
    mutant verify_counts_dead_letters_as_missing): every point then counts as missing and this test fails."""
    from tests.support.faults import FaultProxy

    wait_for_scrapes(services, seconds=40)
    proxy = FaultProxy(services.influx_url)
    proxy.fail_path_prefix, proxy.fail_status = "/api/v2/write", 400
    try:
        with influx.temporary_bucket(services.config().load.influxdb, "dlq") as bucket:
            cfg = services.config(extract={"queries": [RAW_UP], "max_backfill": "40s", "lag_seconds": 5},
                                  influxdb={"bucket": bucket.bucket})
            producer = ProducerService(cfg)
            producer.initialize()
            producer.run_single_cycle()
            producer.close()
            refused = cfg.model_copy(update={"load": cfg.load.model_copy(update={
                "influxdb": cfg.load.influxdb.model_copy(update={"url": proxy.url})})})
            replica = ConsumerThread(refused, until_idle=3)
            replica.join()
            end = min(producer.watermarks.values())
            report = run(cfg, end - 30_000, end)
    finally:
        proxy.close()
    q = {q.name: q for q in report.queries}["availability"]
    assert proxy.failed > 0 and q.expected >= 20 and q.present == 0, report.as_json()
    assert q.missing == 0 and q.dead_lettered == q.expected, report.as_json()
    assert report.dead_letters.explained == q.expected and not report.exact
    assert report.dead_letters.by_reason["influx_rejected"] >= q.expected
    assert replica.metric("healthpipe_consumer_dead_letters_total", {"reason": "influx_rejected"}) >= q.expected


def test_a_window_too_large_for_prometheus_is_verified_in_pieces(services, tmp_path):
    """Prometheus started with --query.max-samples=40 refuses verify's screening counts and any read of the whole
    window (60 series × 300 s): verify compares it exactly, read in time halves and groups of series, and finds every
    sample; a point then deleted from InfluxDB is named missing (the pieces cover the window, nothing more)."""
    points = 300
    with split_data_loaded(services, tmp_path, points, "verify-split", flags=("--query.max-samples=40",)) as (
            cfg, prom, expected, start_s, end_s):
        # the fault hits verify's own reads: the window's screening count is refused
        screen = requests.post(f"{prom.url}/api/v1/query", timeout=30, data={
            "query": f'count_over_time(split_metric{{job="split"}}[{points}s])', "time": end_s})
        assert screen.status_code == 422 and "too many samples" in screen.json()["error"], screen.text
        start_ms, end_ms = (start_s - 1) * 1000, end_s * 1000
        report = verification.run(cfg, cfg.extract.queries, start_ms, end_ms)
        assert report.exact, report.as_json()
        assert report.queries[0].expected == report.queries[0].present == sum(map(len, expected.values()))
        # a range that ends at Prometheus' oldest sample holds that sample of every series: (start, end]
        oldest_ms = start_s * 1000
        edge = verification.run(cfg, cfg.extract.queries, oldest_ms - 60_000, oldest_ms)
        at_oldest = sum(1 for stamps in expected.values() for ts in stamps if ts == oldest_ms)
        assert at_oldest > 0 and edge.exact and edge.queries[0].expected == at_oldest, edge.as_json()
        s = cfg.load.influxdb
        victim_ms = (start_s + 100) * 1000
        delete(s, victim_ms, victim_ms, 'instance="node-3"')
        report = verification.run(cfg, cfg.extract.queries, start_ms, end_ms)
        assert report.missing == 1 and report.extra == report.mismatched == 0, report.as_json()


def test_a_window_of_more_series_than_max_series_per_read_is_verified_in_groups(services, tmp_path):
    """With extract.max_series_per_read 7, the 60 series (hostile instance values, one without `instance`) are
    screened in groups by `instance` (exact values and prefixes such as `node-1`), each group narrowed on both sides
    (a PromQL regex and a Flux regex): every sample is counted once; a deleted point, a point of another series
    written into InfluxDB, and a series under an instance Prometheus never had are all found."""
    from healthpipe.producer.extractor import PrometheusExtractor
    from healthpipe.producer.windows import Window
    from healthpipe.verify.expected import Expected

    with split_data_loaded(services, tmp_path, 120, "verify-groups", max_series_per_read=7) as (
            cfg, prom, expected, start_s, end_s):
        start_ms, end_ms = (start_s - 1) * 1000, end_s * 1000
        q = cfg.extract.queries[0]
        expected_side = Expected(PrometheusExtractor(prom.url), q, cfg.transform, max_series=7)
        groups = expected_side.groups(Window(start_ms, end_ms), None)
        assert len(groups) >= 60 // 7 and groups[0].values[0] == "" and groups[0].tag == "instance"
        instances = [dict(labels).get("instance", "") for labels in expected]
        # every instance value in one group, "" for the series without; branches of values as one prefix
        assert [sum(v in g.values or v.startswith(g.prefixes) for g in groups) for v in instances] == [1] * 60
        assert any(g.prefixes for g in groups), [(g.values, g.prefixes) for g in groups]
        (ghost,) = expected_side.outsider_groups(groups, {"node-1", "ghost"})  # InfluxDB's only: its own group
        assert (ghost.values, ghost.stored) == ((), ("ghost",))
        report = verification.run(cfg, cfg.extract.queries, start_ms, end_ms)
        assert report.exact, report.as_json()
        assert report.queries[0].expected == report.queries[0].present == sum(map(len, expected.values()))
        s = cfg.load.influxdb
        victim_ms = (start_s + 30) * 1000
        delete(s, victim_ms, victim_ms, 'instance="node-40"')
        stray_ms = start_s * 1000 + 500  # between two samples of the series without `instance`
        tags = "health_metrics,job=split,metric=split_metric,metric_type=gauge,service=split"
        with influx.client(s) as c:
            c.write_api(write_options=SYNCHRONOUS).write(
                s.bucket, s.org, [f"{tags} value=1 {stray_ms}", f"{tags},instance=ghost value=2 {stray_ms}"],
                write_precision="ms")
        report = verification.run(cfg, cfg.extract.queries, start_ms, end_ms)
        assert (report.missing, report.extra, report.mismatched) == (1, 2, 0), report.as_json()
        by_instance = {d.labels.get("instance", ""): d for d in report.queries[0].series.values()}
        assert by_instance["node-40"].missing_ranges == [[victim_ms, victim_ms, 1]]
        assert by_instance[""].extra == by_instance["ghost"].extra == 1
