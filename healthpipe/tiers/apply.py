"""`healthpipe tiers apply`: make InfluxDB's buckets and downsampling tasks match the `tiers:` config.

The plan compares what is there with what the config says and lists, per bucket and per task, `create`,
`update` (naming what differs) or `unchanged`; applying it changes only what differs, so a second `apply` does
nothing and says so. `--dry-run` prints the plan and changes nothing. Buckets and tasks are never deleted
(a tier removed from the config is left alone: its data may still be wanted).
"""

from __future__ import annotations

from dataclasses import dataclass

from influxdb_client import BucketRetentionRules, InfluxDBClient, TaskCreateRequest, TaskUpdateRequest
from influxdb_client.rest import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from healthpipe.common.config import HealthpipeConfig
from healthpipe.common.errors import Fatal, SinkUnavailable
from healthpipe.tiers.tasks import script, task_name


@dataclass
class Step:
    kind: str  # bucket / task
    name: str
    action: str  # create / update / unchanged
    detail: str = ""

    def line(self) -> str:
        return f"{self.action:<9} {self.kind:<6} {self.name}" + (f"  ({self.detail})" if self.detail else "")


def client(cfg: HealthpipeConfig) -> InfluxDBClient:
    s = cfg.load.influxdb
    return InfluxDBClient(**{**s.client_kwargs(), "timeout": 30_000})


def _call(what: str, fn, *args, **kwargs):
    """An InfluxDB API call with its failures classified by action."""
    try:
        return fn(*args, **kwargs)
    except ApiException as exc:
        if exc.status in (401, 403):
            raise Fatal(f"InfluxDB refused {what} (HTTP {exc.status}): the token needs write access to buckets "
                        f"and tasks (an all-access token, or one with those permissions)") from None
        if exc.status and 400 <= exc.status < 500:
            raise Fatal(f"InfluxDB rejected {what} (HTTP {exc.status}): {str(exc.body)[:300]}") from None
        raise SinkUnavailable(f"InfluxDB failed {what}: HTTP {exc.status}") from None
    except (Urllib3Error, OSError) as exc:
        raise SinkUnavailable(f"InfluxDB unreachable during {what}: {exc}") from None


def _retention_seconds(bucket) -> int:
    rules = [r for r in (bucket.retention_rules or []) if r.type == "expire"]
    return int(rules[0].every_seconds) if rules else 0


def desired_buckets(cfg: HealthpipeConfig) -> dict[str, int]:
    hot = {cfg.load.influxdb.bucket: int(cfg.tiers.hot.retention.seconds)}
    return hot | {w.bucket: int(w.retention.seconds) for w in cfg.tiers.warm}


def desired_tasks(cfg: HealthpipeConfig) -> dict[str, str]:
    return {task_name(w): script(cfg.tiers, w, cfg.load.influxdb.bucket) for w in cfg.tiers.warm}


def plan_and_apply(cfg: HealthpipeConfig, dry_run: bool) -> list[Step]:
    steps = []
    with client(cfg) as c:
        org = _call("an org lookup", c.organizations_api().find_organizations, org=cfg.load.influxdb.org)
        if not org:
            raise Fatal(f"org {cfg.load.influxdb.org!r} not found; check load.influxdb.org")
        org_id = org[0].id
        buckets = c.buckets_api()
        for name, seconds in desired_buckets(cfg).items():
            found = _call(f"looking up bucket {name}", buckets.find_bucket_by_name, name)
            if found is None:
                steps.append(Step("bucket", name, "create", f"retention {seconds}s"))
                if not dry_run:
                    _call(f"creating bucket {name}", buckets.create_bucket, bucket_name=name, org_id=org_id,
                          retention_rules=BucketRetentionRules(type="expire", every_seconds=seconds))
            elif _retention_seconds(found) != seconds:
                steps.append(Step("bucket", name, "update",
                                  f"retention {_retention_seconds(found) or 'infinite'}s -> {seconds}s"))
                if not dry_run:
                    found.retention_rules = [BucketRetentionRules(type="expire", every_seconds=seconds)]
                    _call(f"updating bucket {name}", buckets.update_bucket, found)
            else:
                steps.append(Step("bucket", name, "unchanged", f"retention {seconds}s"))
        tasks = c.tasks_api()
        existing = {t.name: t for t in _call("listing tasks", tasks.find_tasks, org_id=org_id)}
        for name, flux in desired_tasks(cfg).items():
            task = existing.get(name)
            if task is None:
                steps.append(Step("task", name, "create"))
                if not dry_run:
                    _call(f"creating task {name}", tasks.create_task,
                          task_create_request=TaskCreateRequest(flux=flux, org_id=org_id, status="active",
                                                                description="healthpipe tiers: hot -> warm"))
            elif task.flux != flux or task.status != "active":
                what = "script" if task.flux != flux else f"status {task.status} -> active"
                steps.append(Step("task", name, "update", what))
                if not dry_run:
                    _call(f"updating task {name}", tasks.update_task_request, task.id,
                          TaskUpdateRequest(flux=flux, status="active"))
            else:
                steps.append(Step("task", name, "unchanged"))
    return steps
