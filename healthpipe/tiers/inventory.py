"""`healthpipe tiers status`: each tier's bucket and retention, the downsampling task's last run and result,
and how far warm lags hot (hot's newest sample minus the end of warm's newest window)."""

from __future__ import annotations

from datetime import UTC, datetime

from healthpipe.common.config import HealthpipeConfig
from healthpipe.common.times import iso
from healthpipe.tiers.apply import _call, _retention_seconds, client
from healthpipe.tiers.tasks import task_name


def _newest_ms(c, org: str, bucket: str, lookback: str) -> int | None:
    flux = (f'from(bucket: "{bucket}") |> range(start: -{lookback}) '
            '|> filter(fn: (r) => r._measurement == "health_metrics") |> keep(columns: ["_time"]) '
            '|> group() |> max(column: "_time")')
    tables = _call(f"reading the newest point of {bucket}", c.query_api().query, flux, org=org)
    times = [r.get_time() for t in tables for r in t.records]
    return round(max(times).timestamp() * 1000) if times else None


def report(cfg: HealthpipeConfig) -> list[dict]:
    s = cfg.load.influxdb
    rows = []
    with client(cfg) as c:
        buckets = c.buckets_api()
        hot = _call("a bucket lookup", buckets.find_bucket_by_name, s.bucket)
        hot_newest = _newest_ms(c, s.org, s.bucket, "1d")
        rows.append({"tier": "hot", "bucket": s.bucket, "retention_s": _retention_seconds(hot) if hot else None,
                     "exists": hot is not None, "newest": iso(hot_newest) if hot_newest else None})
        tasks = {t.name: t for t in _call("listing tasks", c.tasks_api().find_tasks)}
        for w in cfg.tiers.warm:
            b = _call("a bucket lookup", buckets.find_bucket_by_name, w.bucket)
            task = tasks.get(task_name(w))
            row = {"tier": f"warm {w.name}", "bucket": w.bucket, "exists": b is not None,
                   "retention_s": _retention_seconds(b) if b else None, "task": task_name(w),
                   "task_status": task.status if task else "missing", "last_run": None, "last_result": None,
                   "lag_s": None}
            if task is not None:
                runs = _call("listing task runs", c.tasks_api().get_runs, task.id, limit=100)
                if runs:
                    last = max(runs, key=lambda r: r.scheduled_for or datetime.min.replace(tzinfo=UTC))
                    row["last_run"] = last.scheduled_for.isoformat() if last.scheduled_for else None
                    row["last_result"] = last.status
            warm_newest = _newest_ms(c, s.org, w.bucket, "30d") if b else None
            if warm_newest is not None and hot_newest is not None:
                row["lag_s"] = round((hot_newest - (warm_newest + w.every.ms)) / 1000, 1)
            rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        retention = f"{r['retention_s']}s" if r.get("retention_s") else ("infinite" if r["exists"] else "-")
        line = f"{r['tier']:<10} bucket {r['bucket']:<22} {'ok ' if r['exists'] else 'MISSING'} retention {retention}"
        if "task" in r:
            line += (f"\n{'':<10} task {r['task']} ({r['task_status']}), last run {r['last_run'] or 'never'}: "
                     f"{r['last_result'] or '-'}, warm lags hot by {r['lag_s'] if r['lag_s'] is not None else '?'} s")
        lines.append(line)
    return "\n".join(lines)
