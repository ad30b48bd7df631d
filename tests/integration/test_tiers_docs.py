"""docs/tiers.md's pandas and DuckDB snippets, run as written against a real archive of a known ledger."""

from __future__ import annotations

import re
from pathlib import Path

from healthpipe.common.kafka import ensure_topics
from healthpipe.sinks.archive.service import archiver
from tests.chaos.ledger import generate
from tests.integration.test_archive import archive_config
from tests.support import kafka
from tests.support.pipeline import ConsumerThread, committed_all, wait_until

DOC = Path(__file__).resolve().parents[2] / "docs" / "tiers.md"


def snippet(library: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    (block,) = [b for b in blocks if f"import {library}" in b]
    return block


def test_the_documented_pandas_and_duckdb_snippets_read_the_archive(services, tmp_path):
    cfg = archive_config(services, "local", tmp_path)
    ensure_topics(cfg)
    ledger = generate(41, 5, 200, per_message=50)
    kafka.produce(cfg, cfg.kafka.topic, ledger.messages)
    replica = ConsumerThread(cfg, service=archiver(cfg))
    wait_until(lambda: committed_all(cfg, cfg.archive.group_id), 120, what="the archive to commit")
    replica.stop()
    root = str(Path(cfg.archive.target))

    scope: dict = {}
    exec(snippet("pandas").replace('ARCHIVE = "data/archive"', f"ARCHIVE = {root!r}"), scope)  # noqa: S102
    per_instance = scope["per_instance"]
    assert list(per_instance["count"]) == [200] * 5
    assert {"date", "hour"} <= set(scope["df"].columns)

    scope = {}
    exec(snippet("duckdb").replace('ARCHIVE = "data/archive"', f"ARCHIVE = {root!r}"), scope)  # noqa: S102
    rows = scope["rows"]
    assert [(r[0], r[1]) for r in rows] == [(f"node-{i}", 200) for i in range(5)]
    means = {r[0]: r[2] for r in rows}
    for i in range(5):
        values = [p[3] for p in ledger.truth if dict(p[1])["instance"] == f"node-{i}"]
        assert abs(means[f"node-{i}"] - sum(values) / len(values)) < 1e-9
