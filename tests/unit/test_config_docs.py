from pathlib import Path

from healthpipe.common.config import load_config
from healthpipe.ops.config_docs import render

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_reference_is_up_to_date():
    assert (ROOT / "docs" / "configuration.md").read_text() == render(), \
        "docs/configuration.md is stale: run `python -m healthpipe.ops.config_docs > docs/configuration.md`"


def test_shipped_config_file_is_valid():
    cfg = load_config(ROOT / "config" / "healthpipe.yaml")
    assert [q.name for q in cfg.extract.queries] == ["availability", "request_rate", "latency_p95", "error_rate"]
