"""The dashboard and the alert rules: read with Grafana's own schema types, and every PromQL names only metrics the
code exports and scrape jobs Prometheus has. Grafana itself cannot be built here (its repository is AGPL and not
used), so its schema comes from the Grafana Foundation SDK, which is generated from it."""

import json
import re
from pathlib import Path

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import prometheus
from grafana_foundation_sdk.models.dashboard import Dashboard

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((ROOT / "config" / "grafana" / "dashboards" / "healthpipe.json").read_text())
RULES = yaml.safe_load((ROOT / "config" / "prometheus" / "alerts.yml").read_text())
# prometheus_client's metric classes, also under an alias (`Counter as MetricCounter`)
DEFINED = re.compile(r"\b\w*?(Counter|Gauge|Histogram|Summary)\(\s*\"(healthpipe_[a-z0-9_]+)\"")
SUFFIXES = {"Counter": ["", "_created"], "Gauge": [""], "Histogram": ["_bucket", "_sum", "_count", "_created"],
            "Summary": ["_sum", "_count", "_created"]}


def exported_metrics() -> set[str]:
    """Every sample name healthpipe's /metrics can show, read from the metric definitions in the code."""
    names = set()
    for source in (ROOT / "healthpipe").rglob("*.py"):
        for kind, name in DEFINED.findall(source.read_text()):
            names |= {name + suffix for suffix in SUFFIXES[kind]}
    return names


def _dashboard() -> Dashboard:
    register_default_plugins()
    return Dashboard.from_json(DASHBOARD)


def _subset(small, big, path="") -> list[str]:
    """Where `small` has a key or value that `big` lacks: what the schema dropped or changed."""
    if isinstance(small, dict):
        return [p for k, v in small.items() for p in
                ([f"{path}.{k}"] if not isinstance(big, dict) or k not in big else _subset(v, big[k], f"{path}.{k}"))]
    if isinstance(small, list):
        if not isinstance(big, list) or len(big) != len(small):
            return [path]
        return [p for i, (a, b) in enumerate(zip(small, big, strict=True)) for p in _subset(a, b, f"{path}[{i}]")]
    return [] if small == big else [f"{path}: {small!r} != {big!r}"]


def test_the_dashboard_reads_with_grafanas_schema_losing_nothing():
    """Every key of the file is one Grafana's schema knows (a typo would be dropped by the round trip)."""
    rendered = json.loads(json.dumps(_dashboard(), cls=JSONEncoder))
    assert _subset(DASHBOARD, rendered) == []


def _promql() -> list[tuple[str, str]]:
    exprs = [(f"panel {panel.title!r}", target.expr) for panel in _dashboard().panels
             for target in (getattr(panel, "targets", None) or []) if isinstance(target, prometheus.Dataquery)]
    exprs += [(f"rule {rule['alert']}", rule["expr"]) for group in RULES["groups"] for rule in group["rules"]]
    return exprs


def test_every_panel_and_rule_names_only_metrics_the_code_exports():
    exported = exported_metrics()
    assert "healthpipe_consumer_lag" in exported and "healthpipe_consumer_dead_letters_total" in exported
    promql = _promql()
    assert len(promql) >= 15
    for where, expr in promql:
        named = set(re.findall(r"\bhealthpipe_[a-z0-9_]+", expr))
        assert named, f"{where}: names no healthpipe metric: {expr}"
        assert named <= exported, f"{where}: {sorted(named - exported)} not exported by the code"


def test_every_job_a_query_names_is_scraped():
    jobs = {j["job_name"] for j in yaml.safe_load((ROOT / "config" / "prometheus" / "prometheus.yml")
                                                  .read_text())["scrape_configs"]}
    for where, expr in _promql():
        assert set(re.findall(r'job="([^"]+)"', expr)) <= jobs, where


@pytest.mark.parametrize("wanted", ["healthpipe_verify_missing_samples", "healthpipe_verify_interval_end_timestamp",
                                    "healthpipe_archive_files_written_total", "healthpipe_consumer_offsets_lost_total",
                                    "healthpipe_consumer_influx_write_failures_total",
                                    "healthpipe_consumer_dead_letters_total"])
def test_each_operational_signal_has_a_panel_and_an_alert_with_a_runbook(wanted):
    panels = [where for where, expr in _promql() if where.startswith("panel") and wanted in expr]
    rules = [rule for group in RULES["groups"] for rule in group["rules"] if wanted in rule["expr"]]
    assert panels and rules, (wanted, panels, [r["alert"] for r in rules])
    runbook = (ROOT / "docs" / "operations.md").read_text()
    for rule in rules:
        assert f"## {rule['alert']}\n" in runbook, rule["alert"]
        assert rule["annotations"]["runbook"] == f"docs/operations.md#{rule['alert'].lower()}"
