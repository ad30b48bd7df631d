"""docs/ml.md's notebook example, run as written (the placeholders bound to a range the stack holds)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.integration.test_ml import loaded  # noqa: F401 (the module fixture)
from tests.support.influx import iso
from tests.support.pipeline import write_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "ml.md"


def test_the_notebook_example_runs_as_written(loaded, tmp_path, monkeypatch):  # noqa: F811
    cfg, start, end = loaded
    monkeypatch.setenv("HEALTHPIPE_CONFIG", str(write_config(cfg, tmp_path / "c.yaml")))
    monkeypatch.setenv("HEALTHPIPE_LOAD__INFLUXDB__TOKEN", cfg.load.influxdb.token.get_secret_value())
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S) if "load_frame" in b]
    scope = {"FROM": iso(start), "TO": iso(end), "AS_OF": iso(start + 60_000)}
    exec(code, scope)  # noqa: S102
    assert len(scope["frame"]) and set(scope["frame"]["query"]) == {"availability", "request_rate"}
    assert scope["by_series"].shape[1] == scope["frame"]["series_id"].nunique()
    assert len(scope["known"])
    assert list(scope["features"].columns[:5]) == ["series_id", "ts", "metric", "query", "metric_type"]
