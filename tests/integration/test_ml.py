"""The ML data path against the real stack: `healthpipe export`, `load_frame`, the cold tier behind it, and the
training/serving consistency of the online features (served at T == exported as of T, bit for bit)."""

from __future__ import annotations

import json
import random
import time
import uuid

import numpy as np
import pandas as pd
import pytest
import requests
from influxdb_client.client.write_api import SYNCHRONOUS

from healthpipe.ml import data
from healthpipe.ml.export import export
from healthpipe.ml.serve import FeatureServer
from healthpipe.producer.service import ProducerService
from healthpipe.sinks.archive.service import archiver
from tests.integration.test_producer import RAW_UP, wait_for_scrapes
from tests.support import influx
from tests.support.pipeline import ConsumerThread, committed_all, free_port, wait_until

REQUESTS = {"name": "requests", "promql": 'http_requests_total{job="test-app"}', "mode": "raw",
            "metric_type": "counter"}
RATE = {"name": "request_rate", "promql": "sum by (method, path) (rate(http_requests_total[1m]))", "mode": "range",
        "step": "5s", "metric_type": "throughput"}


@pytest.fixture(scope="module")
def loaded(services, tmp_path_factory):
    """~3 minutes of the demo app through the pipeline into a scratch bucket, and archived too: (cfg, start, end)."""
    wait_for_scrapes(services, seconds=170)  # the tests read the last 150 s before the watermark (now - 5 s)
    archive_dir = tmp_path_factory.mktemp("ml-archive")
    with influx.temporary_bucket(services.config().load.influxdb, "ml") as bucket:
        cfg = services.config(extract={"queries": [RAW_UP, RATE, REQUESTS], "max_backfill": "3m", "lag_seconds": 5},
                              influxdb={"bucket": bucket.bucket}, archive={"target": str(archive_dir),
                                                                           "max_file_age_seconds": 1})
        producer = ProducerService(cfg)
        producer.initialize()
        producer.run_single_cycle()
        producer.close()
        ConsumerThread(cfg, until_idle=3).join()
        arch = ConsumerThread(cfg, service=archiver(cfg))
        wait_until(lambda: committed_all(cfg, cfg.archive.group_id), 120, what="the archive")
        arch.stop()
        end = min(producer.watermarks.values())
        yield cfg, end - 150_000, end


def raw_points(cfg, start, end, metric) -> pd.DataFrame:
    rows = influx.points(cfg.load.influxdb, f'r.metric == "{metric}"', start=influx.iso(start + 1),
                         stop=influx.iso(end + 1))
    return pd.DataFrame([{"instance": r.get("instance"), "method": r.get("method"), "path": r.get("path"),
                          "ts": round(r["_time"].timestamp() * 1000), "value": r["_value"]} for r in rows])


def test_export_writes_the_raw_samples_a_manifest_and_completeness(loaded, tmp_path):
    cfg, start, end = loaded
    out = tmp_path / "raw"
    manifest = export(cfg, cfg.select_queries(["availability"]), start, end, out, progress=False)
    frame = pd.read_parquet(out / "data")
    truth = raw_points(cfg, start, end, "up")
    assert len(frame) == len(truth) == manifest["rows"] > 100
    assert sorted(frame["ts"].dt.as_unit("ms").astype("int64")) == sorted(truth["ts"])
    assert list(frame.columns[:6]) == ["series_id", "ts", "value", "metric", "query", "metric_type"]
    assert set(frame["query"]) == {"availability"} and "instance" in frame.columns
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["queries"] == ["availability"] and doc["tiers"][0]["tier"] == "hot"
    for f in doc["files"]:
        import hashlib

        assert hashlib.sha256((out / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    assert (out / "completeness.png").stat().st_size > 1000
    completeness = pd.read_csv(out / "completeness.csv")
    assert completeness["present"].sum() == len(frame)
    assert not list(tmp_path.glob(".raw.tmp-*"))  # the temporary directory was renamed away


@pytest.mark.parametrize("frame_rows", [None, 40], ids=["whole chunks", "frames of 40 rows"])
def test_the_grid_takes_the_last_observation_within_the_lookback(loaded, frame_rows, monkeypatch):
    """With frames of 40 rows a chunk is read from InfluxDB in several frames, each of whole series: a series split
    across two would be put on the grid twice."""
    if frame_rows:
        monkeypatch.setattr(data, "CHUNK_ROWS", frame_rows)
    cfg, start, end = loaded
    step = 10_000
    frame = data.load_frame(start / 1000, end / 1000, queries=["request_rate"], step="10s", cfg=cfg)
    truth = raw_points(cfg, start - 300_000, end, "request_rate")
    grid = np.arange(-(-(start + 1) // step) * step, end + 1, step)
    assert frame.groupby("series_id").size().eq(len(grid)).all()  # every series on every grid point
    for (method, path), series in truth.groupby(["method", "path"]):
        got = frame[(frame["method"] == method) & (frame["path"] == path)].sort_values("ts")
        # independently: each 10 s window (g - 10 s, g] keeps its last sample, observed at g; a grid point takes
        # the newest such window within 5 minutes before it
        obs = series.sort_values("ts").assign(window=lambda d: -(-d.ts // step) * step).drop_duplicates(
            "window", keep="last")
        want = []
        for g in grid:
            recent = obs[(obs.window <= g) & (obs.window > g - 300_000)]
            want.append(recent.value.iloc[-1] if len(recent) else np.nan)
        np.testing.assert_array_equal(got["value"].to_numpy(), np.array(want))


def test_as_of_never_lets_a_later_sample_in(loaded):
    """On request_rate, whose values change from step to step: after `as_of` every series carries the value it had
    at `as_of` (within the lookback), never a newer one. The data is checked to change after `as_of`, so a
    frame that let later samples in would differ."""
    cfg, start, end = loaded
    as_of = start + 60_000
    frame = data.load_frame(start / 1000, end / 1000, queries=["request_rate"], step="5s", as_of=as_of / 1000,
                            cfg=cfg)
    truth = raw_points(cfg, start - 300_000, end, "request_rate")
    changed = 0
    for (method, path), series in truth.groupby(["method", "path"]):
        series = series.sort_values("ts")
        known, later = series[series.ts <= as_of], series[series.ts > as_of]
        changed += bool((later.value != known.value.iloc[-1]).any())
        got = frame[(frame["method"] == method) & (frame["path"] == path)]
        after = got[got["ts"] > pd.Timestamp(as_of, unit="ms", tz="UTC")]["value"].dropna()
        assert len(after) and (after == known.value.iloc[-1]).all(), (method, path)
    assert changed, "no series changed after as_of: the test could not tell a leak from none"


def test_wide_pivots_one_column_per_series(loaded):
    """One column per series, one row per instant, each cell the long frame's value at that series and instant."""
    cfg, start, end = loaded
    wide = data.load_frame(start / 1000, end / 1000, queries=["request_rate"], step="10s", wide=True, cfg=cfg)
    long = data.load_frame(start / 1000, end / 1000, queries=["request_rate"], step="10s", cfg=cfg)
    assert set(wide.columns) == set(long["series_id"]) and len(wide) == long["ts"].nunique()
    assert long["value"].notna().sum() > 10
    for sid, series in long.groupby("series_id"):
        column = wide[sid]
        want = series.set_index("ts")["value"]
        np.testing.assert_array_equal(column.loc[want.index].to_numpy(), want.to_numpy())


def prometheus_samples(cfg, selector: str, start_ms: int, end_ms: int) -> dict[tuple, pd.DataFrame]:
    """Per series (its labels but __name__ and job), Prometheus' own raw samples in (start, end], from its API."""
    span_s = (end_ms - start_ms) // 1000 + 2
    body = requests.get(f"{cfg.extract.prometheus_url}/api/v1/query", timeout=30,
                        params={"query": f"{selector}[{span_s}s]", "time": end_ms / 1000}).json()
    out = {}
    for r in body["data"]["result"]:
        frame = pd.DataFrame({"ts": [round(float(ts) * 1000) for ts, _ in r["values"]],
                              "value": [float(v) for _, v in r["values"]]})
        key = tuple(sorted((k, v) for k, v in r["metric"].items() if k not in ("__name__", "job")))
        out[key] = frame[(frame.ts > start_ms) & (frame.ts <= end_ms)].reset_index(drop=True)
    return out


def row_of(frame: pd.DataFrame, key: tuple) -> pd.DataFrame:
    match = np.ones(len(frame), dtype=bool)
    for name, value in key:
        match &= (frame[name] == value).to_numpy()
    return frame[match]


def test_the_features_equal_an_independent_computation_from_prometheus(loaded):
    """The oracle: at 5 instants, every series' features from `latest_window` (InfluxDB through healthpipe) equal
    the same features computed here with pandas and numpy from Prometheus' raw samples. Exact for count, last,
    min, max and staleness; 1e-12 relative for mean and stddev; 1e-9 for the slope (numpy's polyfit, another
    algorithm than the feature function's)."""
    cfg, start, end = loaded
    rng = random.Random(24)
    checked = 0
    for _ in range(5):
        at = (rng.randrange(start + 90_000, end) // 1000) * 1000
        got = data.latest_window({"query": "requests"}, "1m", at / 1000, cfg)
        truth = prometheus_samples(cfg, REQUESTS["promql"], at - 60_000, at)
        assert len(got) == len(truth) > 1
        for key, s in truth.items():
            row = row_of(got, key)
            assert len(row) == 1, key
            f = row.iloc[0]
            t_s = (s.ts - s.ts.iloc[0]) / 1000
            assert f["count"] == len(s) and f["last"] == s.value.iloc[-1]
            assert f["min"] == s.value.min() and f["max"] == s.value.max()
            assert f["staleness_s"] == (at - s.ts.iloc[-1]) / 1000
            assert f["mean"] == pytest.approx(s.value.mean(), rel=1e-12)
            assert f["stddev"] == pytest.approx(s.value.std(ddof=0), rel=1e-12, abs=1e-12)
            assert f["slope"] == pytest.approx(np.polyfit(t_s, s.value, 1)[0], rel=1e-9, abs=1e-12)
            checked += 1
    assert checked >= 10


def test_rate_counters_equal_an_independent_computation_from_prometheus(loaded, tmp_path, monkeypatch):
    """`export --rate-counters`, value for value, against rates computed here from Prometheus' raw counter samples:
    (v - previous) / seconds between them, a decrease counted as a reset (the new value in full), each series'
    first sample in the range dropped. 1e-12 relative. Chunks of at most one minute, so that the range always
    crosses chunk boundaries (a rate was lost at each one: found when a run crossed 20:00 UTC), each read in frames
    of about 50 rows (each series whole in one)."""
    monkeypatch.setattr(data, "MAX_CHUNK_MS", 60_000)
    monkeypatch.setattr(data, "CHUNK_ROWS", 50)
    cfg, start, end = loaded
    out = tmp_path / "rates"
    export(cfg, cfg.select_queries(["requests"]), start, end, out, rate_counters=True, progress=False)
    got = pd.read_parquet(out / "data")
    truth = prometheus_samples(cfg, REQUESTS["promql"], start, end)
    compared = 0
    for key, s in truth.items():
        delta = s.value.diff()
        delta = delta.where(delta >= 0, s.value)
        want = (delta / (s.ts.diff() / 1000)).iloc[1:].reset_index(drop=True)
        mine = row_of(got, key).sort_values("ts")
        assert (mine["ts"].dt.as_unit("ms").astype("int64").to_numpy() == s.ts.iloc[1:].to_numpy()).all(), key
        np.testing.assert_allclose(mine["value"].to_numpy(), want.to_numpy(), rtol=1e-12)
        compared += len(want)
    assert compared > 100 and (got["value"] > 0).any()


def test_csv_holds_the_same_rows_as_parquet(loaded, tmp_path):
    """`--format csv` writes what `--format parquet` writes, row for row."""
    cfg, start, end = loaded
    queries = cfg.select_queries(["request_rate"])
    export(cfg, queries, start, end, tmp_path / "p", step_ms=10_000, progress=False)
    manifest = export(cfg, queries, start, end, tmp_path / "c", step_ms=10_000, fmt="csv", progress=False)
    parquet = pd.read_parquet(tmp_path / "p" / "data").sort_values(["series_id", "ts"]).reset_index(drop=True)
    files = sorted((tmp_path / "c" / "data").rglob("*.csv"))
    assert files and manifest["format"] == "csv" and manifest["rows"] == len(parquet) > 0
    csv = pd.concat([pd.read_csv(f) for f in files]).sort_values(["series_id", "ts"]).reset_index(drop=True)
    assert list(csv.columns[:3]) == ["series_id", "ts", "value"]
    assert (pd.to_datetime(csv["ts"], utc=True).dt.as_unit("ms") == parquet["ts"].dt.as_unit("ms")).all()
    np.testing.assert_array_equal(csv["value"].to_numpy(), parquet["value"].to_numpy())


def iceberg_archive(cfg, tmp_path):
    """The loaded data archived again, into an Iceberg table of its own (a group of its own)."""
    folder = tmp_path / "iceberg"
    archive = cfg.archive.model_copy(update={
        "format": "iceberg", "target": str(folder), "group_id": f"ml-iceberg-{uuid.uuid4().hex[:8]}",
        "iceberg": cfg.archive.iceberg.model_copy(update={"catalog_uri": f"sqlite:///{folder}.db"})})
    cfg = cfg.model_copy(update={"archive": archive})
    arch = ConsumerThread(cfg, service=archiver(cfg))
    wait_until(lambda: committed_all(cfg, cfg.archive.group_id), 120, what="the Iceberg archive")
    return cfg, arch


@pytest.mark.parametrize("target", ["local", "s3", "iceberg"])
def test_the_cold_tier_serves_what_hot_no_longer_holds_and_agrees_with_hot(loaded, services, target, tmp_path):
    """Hot's retention cut to leave the range's first minute to the cold tier: the frame read across cold and hot
    equals the frame read from hot alone, with the archive in a directory, on the stack's S3 server, and as an
    Iceberg table."""
    cfg, start, end = loaded
    if target == "iceberg":
        cfg, arch = iceberg_archive(cfg, tmp_path)
        arch.stop()
    if target == "s3":
        if not services.s3:
            pytest.skip("no S3 server in the stack (make stack-up starts one)")
        s3 = services.config(archive={"target": "s3", "max_file_age_seconds": 1,
                                      "s3": {**services.s3, "prefix": f"ml-{uuid.uuid4().hex[:10]}"}}).archive
        cfg = cfg.model_copy(update={"archive": s3})
        arch = ConsumerThread(cfg, service=archiver(cfg))
        wait_until(lambda: committed_all(cfg, cfg.archive.group_id), 120, what="the archive on S3")
        arch.stop()
    now = int(time.time() * 1000)
    split = cfg.model_copy(deep=True)
    split.tiers.hot.retention = split.tiers.hot.retention.parse(f"{(now - start - 60_000) // 1000}s")
    parts = {p.tier for p in data.plan(split, start, end, None, now)}
    assert parts == {"cold", "hot"}
    mixed = data.load_frame(start / 1000, end / 1000, queries=["availability", "request_rate"], cfg=split)
    hot = data.load_frame(start / 1000, end / 1000, queries=["availability", "request_rate"], cfg=cfg)
    key = ["series_id", "ts"]
    pd.testing.assert_frame_equal(mixed.sort_values(key).reset_index(drop=True)[["series_id", "ts", "value"]],
                                  hot.sort_values(key).reset_index(drop=True)[["series_id", "ts", "value"]])


def test_an_export_at_an_iceberg_snapshot_is_rebuilt_bit_for_bit_after_more_data_lands(loaded, tmp_path):
    """export records the Iceberg snapshot its cold part read; `--snapshot` with it, after the archiver has added
    samples inside the range, gives the same files (SHA-256 each), while an export at the new snapshot does not
    (the control: the new samples are in the range)."""
    from healthpipe.cli import main
    from healthpipe.common.messages import SeriesWindow, headers
    from tests.support import kafka
    from tests.support.pipeline import write_config

    cfg, start, end = loaded
    cfg, arch = iceberg_archive(cfg, tmp_path)
    now = int(time.time() * 1000)
    cfg.tiers.hot.retention = cfg.tiers.hot.retention.parse(f"{(now - start - 60_000) // 1000}s")
    first = export(cfg, cfg.select_queries(["availability"]), start, end, tmp_path / "first", progress=False)
    pinned = first["iceberg_snapshot"]
    assert pinned is not None and any(t["tier"] == "cold" and str(pinned) in t["detail"] for t in first["tiers"])
    config_file = write_config(cfg, tmp_path / "cfg.yaml")

    def export_at(snapshot, out) -> dict:
        assert main(["export", "--config", str(config_file), "--from", str(start / 1000), "--to", str(end / 1000),
                     "--query", "availability", "--snapshot", str(snapshot), "--out", str(out)]) == 0
        doc = json.loads((out / "manifest.json").read_text())
        assert doc["iceberg_snapshot"] == snapshot and [t["tier"] for t in doc["tiers"]] == ["cold"]
        return {f["path"]: f["sha256"] for f in doc["files"]}

    before = export_at(pinned, tmp_path / "at-pinned")
    assert before
    # more samples inside the range arrive and are archived: a new snapshot
    late = SeriesWindow("availability", "availability", {"__name__": "up", "instance": "late:1", "job": "late"},
                        start, end, [(start + 1000 * i, "1") for i in range(1, 60)])
    kafka.produce(cfg, cfg.kafka.topic, [(late.key, late.to_json(), headers())])
    wait_until(lambda: committed_all(cfg, cfg.archive.group_id), 120, what="the late samples to be archived")
    arch.stop()
    from healthpipe.sinks.archive.iceberg import IcebergTable
    from healthpipe.sinks.archive.store import Store

    newest = IcebergTable(cfg.archive, Store(cfg.archive)).snapshot_id()
    assert newest != pinned
    assert export_at(pinned, tmp_path / "again") == before
    assert export_at(newest, tmp_path / "newest") != before
    assert main(["export", "--config", str(config_file), "--from", str(start / 1000), "--to", str(end / 1000),
                 "--snapshot", "12345", "--out", str(tmp_path / "none")]) == 2


def test_bad_input_exits_2_and_an_unreachable_influxdb_3_leaving_no_directory(loaded, tmp_path, capsys, monkeypatch):
    from healthpipe.cli import main
    from tests.support.pipeline import write_config

    cfg, start, end = loaded
    monkeypatch.setenv("HEALTHPIPE_LOAD__INFLUXDB__TOKEN", cfg.load.influxdb.token.get_secret_value())
    conf = str(write_config(cfg, tmp_path / "c.yaml"))
    base = ["export", "--config", conf, "--from", influx.iso(start), "--to", influx.iso(end)]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    cases = [[*base, "--query", "nope", "--out", str(tmp_path / "a")],
             ["export", "--config", conf, "--from", influx.iso(end), "--to", influx.iso(start), "--out",
              str(tmp_path / "b")],
             [*base, "--step", "often", "--out", str(tmp_path / "c")],
             [*base, "--as-of", influx.iso(end + 3_600_000), "--out", str(tmp_path / "d")],
             [*base, "--out", str(tmp_path / "full")]]
    for args in cases:
        assert main(args) == 2, args
    err = capsys.readouterr().err
    for reason in ("no query named 'nope'", "must be before", "--step", "--as-of", "not empty"):
        assert reason in err, reason
    dead = cfg.model_copy(deep=True)
    dead.load.influxdb.url = f"http://127.0.0.1:{free_port()}"
    conf = str(write_config(dead, tmp_path / "dead.yaml"))
    assert main(["export", "--config", conf, "--from", influx.iso(start), "--to", influx.iso(end), "--out",
                 str(tmp_path / "e")]) == 3
    assert not (tmp_path / "e").exists() and not list(tmp_path.glob(".e.tmp-*"))


def test_features_served_at_t_equal_the_exported_features_as_of_t(loaded, tmp_path):
    """20 random instants: /features at T and `export --features 5m --as-of T` agree exactly, float for float."""
    cfg, start, end = loaded
    # the InfluxDB path (the stream store's own agreement test: test_features_stream.py)
    cfg = cfg.model_copy(update={"features": cfg.features.model_copy(update={"stream": False})})
    server = FeatureServer(cfg, free_port(), host="127.0.0.1").start()
    rng = random.Random(15)
    compared = 0
    try:
        for _ in range(20):
            t = (rng.randrange(start + 60_000, end) // 1000) * 1000
            served = requests.get(f"http://127.0.0.1:{server.port}/features",
                                  params={"query": "request_rate", "window": "5m", "at": t / 1000}, timeout=30).json()
            out = tmp_path / f"f{t}"
            export(cfg, cfg.select_queries(["request_rate"]), t - 1000, t, out, step_ms=1000, as_of_ms=t,
                   feature_window_ms=300_000, progress=False, overwrite=True)
            exported = pd.read_parquet(out / "data")
            exported = exported[exported["ts"] == pd.Timestamp(t, unit="ms", tz="UTC")]
            assert served["series"] and len(served["series"]) == len(exported)
            for s in served["series"]:
                row = exported[exported["series_id"] == s["series_id"]].iloc[0]
                for name, value in s["features"].items():
                    want = row[name]
                    if value is None:
                        assert np.isnan(want), (t, name)
                    else:
                        assert value == want, (t, s["series_id"], name, value, want)  # bit-equal
                    compared += 1
        metrics = requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).text
        assert "healthpipe_features_request_seconds_count 20.0" in metrics
    finally:
        server.stop()
    assert compared >= 20 * 8



def test_the_feature_cache_answers_exactly_as_a_fresh_read_through_new_and_late_samples(services):
    """The feature server's WindowCache: same features as reading the window afresh, whether it answered from
    counts alone, re-read the newest minute, or had to read the whole window (a backfilled sample)."""
    from healthpipe.ml.window_cache import WindowCache

    def write(settings, points):  # (instance, ts_ms, value); one series has a tag the others lack
        lines = [f"health_metrics,instance={i},job=cache,metric=cache_metric,metric_type=gauge"
                 f"{',zone=a' if i == 'n0' else ''} value={v!r} {t}" for i, t, v in points]
        with influx.client(settings) as c:
            c.write_api(write_options=SYNCHRONOUS).write(settings.bucket, settings.org, "\n".join(lines),
                                                         write_precision="ms")

    query = {"name": "cache", "promql": "cache_metric", "mode": "raw", "metric_type": "gauge"}
    now = (int(time.time()) - 600) * 1000
    with influx.temporary_bucket(services.config().load.influxdb, "cache") as bucket:
        cfg = services.config(extract={"queries": [query]}, influxdb={"bucket": bucket.bucket})
        write(bucket, [(f"n{s}", now - 300_000 + i * 1000, float((s * 7 + i) % 13)) for s in range(3)
                       for i in range(300)])
        cache = WindowCache(cfg, overlap_ms=30_000)

        def same_as_fresh(at: int, how: str, window: str = "5m") -> None:
            before = dict(cache.reads)
            cached = data.latest_window({"query": "cache"}, window, at / 1000, cfg, cache=cache)
            fresh = data.latest_window({"query": "cache"}, window, at / 1000, cfg)
            assert {k: cache.reads[k] - before[k] for k in before} == {k: int(k == how) for k in before}
            pd.testing.assert_frame_equal(cached.sort_values("series_id").reset_index(drop=True),
                                          fresh.sort_values("series_id").reset_index(drop=True), check_dtype=False)
            assert len(fresh) == 3 and fresh["count"].sum() > 0

        same_as_fresh(now, "whole")
        same_as_fresh(now, "cached")
        write(bucket, [(f"n{s}", now + i * 1000, float(i)) for s in range(3) for i in range(1, 11)])
        same_as_fresh(now + 10_000, "newest")  # the new ten seconds, and nothing older re-read
        write(bucket, [("n1", now + 5_500, 99.0)])  # a little late: inside the overlap
        same_as_fresh(now + 10_000, "newest")
        write(bucket, [("n2", now - 200_000 + 500, -5.0)])  # a backfill: older than the overlap
        same_as_fresh(now + 10_000, "whole")
        same_as_fresh(now + 5_000, "cached", window="1m")  # an earlier, shorter window the cache covers
