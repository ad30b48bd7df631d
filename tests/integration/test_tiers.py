"""Storage tiers against the real InfluxDB: `tiers apply` is idempotent, and the downsampling task writes exactly
the aggregates pandas computes independently from the same points, at window edges and across counter resets."""

from __future__ import annotations

import math
import time
import uuid
from datetime import UTC, datetime

import pandas as pd
import pytest
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from healthpipe.tiers.apply import client, plan_and_apply
from healthpipe.tiers.tasks import task_name
from tests.support import influx

MIN = 60_000


@pytest.fixture
def tiered(services):
    base = services.config()
    warm = f"warm-{uuid.uuid4().hex[:8]}"
    with influx.temporary_bucket(base.load.influxdb, "hot") as hot:
        cfg = services.config(influxdb={"bucket": hot.bucket}, tiers={
            "hot": {"retention": "30d"},
            "warm": [{"name": warm, "bucket": warm, "every": "1m", "retention": "60d", "offset": "5s"}]})
        yield cfg
        with client(cfg) as c:
            for t in c.tasks_api().find_tasks(name=task_name(cfg.tiers.warm[0])):
                c.tasks_api().delete_task(t.id)
            b = c.buckets_api().find_bucket_by_name(warm)
            if b:
                c.buckets_api().delete_bucket(b)


def test_apply_twice_changes_nothing_the_second_time_and_dry_run_changes_nothing(tiered):
    warm = tiered.tiers.warm[0]
    plan = plan_and_apply(tiered, dry_run=True)
    assert [(s.kind, s.action) for s in plan] == [("bucket", "update"), ("bucket", "create"), ("task", "create")]
    with client(tiered) as c:
        assert c.buckets_api().find_bucket_by_name(warm.bucket) is None  # a dry run changes nothing
    first = plan_and_apply(tiered, dry_run=False)
    assert [s.action for s in first] == ["update", "create", "create"]
    second = plan_and_apply(tiered, dry_run=False)
    assert [s.action for s in second] == ["unchanged"] * 3
    changed = tiered.model_copy(deep=True)
    changed.tiers.warm[0].retention = changed.tiers.warm[0].retention.parse("90d")
    assert [s.action for s in plan_and_apply(changed, dry_run=True)] == ["unchanged", "update", "unchanged"]


def _run(c, task_id: str, scheduled_ms: int) -> None:
    run = c.tasks_api().run_manually(task_id, scheduled_for=datetime.fromtimestamp(scheduled_ms / 1000, UTC))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = _find_run(c, task_id, run.id) or run
        if run.status in ("success", "failed", "canceled"):
            break
        time.sleep(0.5)
    logs = c.tasks_api().get_run_logs(task_id, run.id)
    assert run.status == "success", [entry.message for entry in logs]


def _find_run(c, task_id: str, run_id: str):
    """The run, or None while InfluxDB moves it from its in-memory queue to the _tasks log: between the two,
    GET /runs/{id} answers 404 "run not found" (seen in CI), and the finished run is then in the run list."""
    try:
        return c.tasks_api().get_run(task_id, run_id)
    except ApiException as e:
        if e.status != 404:
            raise
    return next((r for r in c.tasks_api().get_runs(task_id, limit=100) if r.id == run_id), None)


def expected(points: pd.DataFrame, start: int, counter_keys: set[str]) -> dict:
    """The aggregates of window [start, start + 1 min), computed here with pandas, independently of Flux."""
    out = {}
    for key, series in points.sort_values("t").groupby("series"):
        inside = series[(series.t >= start) & (series.t < start + MIN)]
        if inside.empty:
            continue
        v = inside.v
        out[(key, "mean")], out[(key, "min")], out[(key, "max")] = v.mean(), v.min(), v.max()
        out[(key, "last")], out[(key, "count")] = v.iloc[-1], len(v)
        if key in counter_keys:
            # steps between consecutive samples (the first one of the window counts from the sample before it,
            # if that one is in the window before); a decrease is a reset: the new value counts in full
            earlier = series[(series.t < start) & (series.t >= start - MIN)]
            chain = pd.concat([earlier.tail(1), inside])
            deltas = chain.v.diff().iloc[1:]
            resets = deltas < 0
            deltas[resets] = chain.v.iloc[1:][resets]
            if len(deltas):  # a lone sample with nothing before it has no increase to tell
                out[(key, "increase")] = deltas.sum()
    return out


def test_the_task_aggregates_exactly_at_edges_and_across_counter_resets(tiered):
    plan_and_apply(tiered, dry_run=False)
    s, warm = tiered.load.influxdb, tiered.tiers.warm[0]
    b = (int(time.time() * 1000) // MIN - 30) * MIN  # a window half an hour ago
    rows = [  # (series, metric, metric_type, offset from b in ms, value)
        ("g", "cpu", "gauge", -10_000, 5.0), ("g", "cpu", "gauge", 0, 1.5),  # exactly on the window's start
        ("g", "cpu", "gauge", 20_000, 4.25), ("g", "cpu", "gauge", MIN - 1, 2.0),  # the window's last ms
        ("g", "cpu", "gauge", MIN, 100.0),  # the next window's first ms
        ("c", "requests_total", "throughput", -5_000, 10.0), ("c", "requests_total", "throughput", 10_000, 15.0),
        ("c", "requests_total", "throughput", 30_000, 3.0),  # a reset
        ("c", "requests_total", "throughput", 50_000, 8.0), ("c", "requests_total", "throughput", 70_000, 9.0),
        ("k", "jobs", "counter", 5_000, 1.0), ("k", "jobs", "counter", 65_000, 0.5),  # reset across windows
    ]
    lines = [f'health_metrics,instance={k},metric={m},metric_type={t} value={v!r} {b + dt}' for k, m, t, dt, v in rows]
    with influx.client(s) as c:
        c.write_api(write_options=SYNCHRONOUS).write(s.bucket, s.org, "\n".join(lines), write_precision="ms")
    with client(tiered) as c:
        (task,) = c.tasks_api().find_tasks(name=task_name(warm))
        for window_end in (b + MIN, b + 2 * MIN):
            _run(c, task.id, window_end + 1)  # any moment inside the next window: the task truncates
    frame = pd.DataFrame([(k, b + dt, v) for k, _, _, dt, v in rows], columns=["series", "t", "v"])
    want = {**{(k, f, b): x for (k, f), x in expected(frame, b, {"c", "k"}).items()},
            **{(k, f, b + MIN): x for (k, f), x in expected(frame, b + MIN, {"c", "k"}).items()}}
    got = {}
    for r in influx.points(s.model_copy(update={"bucket": warm.bucket}), "true", start="-2h"):
        got[(r["instance"], r["_field"], round(r["_time"].timestamp() * 1000))] = r["_value"]
    assert set(got) == set(want), (sorted(set(want) - set(got)), sorted(set(got) - set(want)))
    for key, value in want.items():
        assert math.isclose(got[key], value, rel_tol=1e-12), (key, got[key], value)
    assert got[("c", "increase", b)] == 5 + 3 + 5  # 10→15, reset to 3, 3→8
    assert got[("k", "increase", b + MIN)] == 0.5  # reset across the window edge
    from healthpipe.tiers.inventory import report

    rows = {r["tier"]: r for r in report(tiered)}
    warm_row = rows[f"warm {warm.name}"]
    assert warm_row["exists"] and warm_row["task_status"] == "active" and warm_row["last_result"] == "success"
    assert rows["hot"]["retention_s"] == 30 * 86400


def test_an_export_older_than_hot_reads_the_warm_tier_and_agrees_with_hot(tiered, tmp_path):
    """`export --step 1m` over a range hot's retention no longer reaches reads the warm bucket's `last` of each
    minute, observed at the minute's end. Its values are those computed here from the points written (the last
    sample of each minute), and those of the same export read from hot."""
    from healthpipe.common.config import QuerySettings
    from healthpipe.ml.export import export

    plan_and_apply(tiered, dry_run=False)
    s, warm = tiered.load.influxdb, tiered.tiers.warm[0]
    b = (int(time.time() * 1000) // MIN - 30) * MIN  # five minutes, half an hour ago
    points = [(b + 5_000 + i * 10_000, round(1.5 * i % 7 + 0.25 * i, 2)) for i in range(30)]  # never on an edge
    lines = [f"health_metrics,instance=w,metric=wcpu,metric_type=gauge value={v!r} {t}" for t, v in points]
    with influx.client(s) as c:
        c.write_api(write_options=SYNCHRONOUS).write(s.bucket, s.org, "\n".join(lines), write_precision="ms")
    with client(tiered) as c:
        (task,) = c.tasks_api().find_tasks(name=task_name(warm))
        for k in range(1, 6):
            _run(c, task.id, b + k * MIN + 1)
    query = {"name": "wcpu", "promql": "wcpu", "mode": "raw", "metric_type": "gauge"}
    hot_cfg = tiered.model_copy(deep=True)
    hot_cfg.extract.queries = [QuerySettings.model_validate(query)]
    warm_cfg = hot_cfg.model_copy(deep=True)
    warm_cfg.tiers.hot.retention = warm_cfg.tiers.hot.retention.parse("10m")  # the range is 30 min old
    frames = {}
    for name, cfg in (("warm", warm_cfg), ("hot", hot_cfg)):
        manifest = export(cfg, cfg.select_queries(["wcpu"]), b, b + 5 * MIN, tmp_path / name, step_ms=MIN,
                          progress=False)
        assert [t["tier"] for t in manifest["tiers"]] == [name], manifest["tiers"]
        frames[name] = pd.read_parquet(tmp_path / name / "data").sort_values("ts")
    want = [max(p for p in points if p[0] < b + k * MIN)[1] for k in range(1, 6)]  # each minute's last sample
    got_ts = frames["warm"]["ts"].dt.as_unit("ms").astype("int64").tolist()
    assert got_ts == [b + k * MIN for k in range(1, 6)]
    assert frames["warm"]["value"].tolist() == want
    assert frames["hot"]["value"].tolist() == want
