"""docs/tiers.md's pandas, DuckDB and pyiceberg snippets, run as written against a real archive of a known ledger
(the hive layout in a directory; the Iceberg table on the stack's SeaweedFS S3)."""

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


def snippet(library: str, marker: str = "read_parquet") -> str:
    """The python block importing `library`; where several do, the one that also holds `marker`."""
    blocks = [b for b in re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S) if f"import {library}" in b]
    if len(blocks) > 1:
        blocks = [b for b in blocks if marker in b]
    (block,) = blocks
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


def test_the_documented_iceberg_snippets_read_the_table_on_s3(services, tmp_path):
    import pytest

    from healthpipe.sinks.archive.iceberg import IcebergTable
    from healthpipe.sinks.archive.store import Store
    from tests.support.pipeline import process_env

    if not services.s3:
        pytest.skip("no S3 server in the stack (make stack-up starts one)")
    catalog = f"sqlite:///{tmp_path / 'catalog.db'}"
    cfg = archive_config(services, "s3", tmp_path, format="iceberg", iceberg={"catalog_uri": catalog})
    ensure_topics(cfg)
    ledger = generate(43, 5, 200, per_message=50)
    kafka.produce(cfg, cfg.kafka.topic, ledger.messages)
    replica = ConsumerThread(cfg, service=archiver(cfg))
    wait_until(lambda: committed_all(cfg, cfg.archive.group_id), 120, what="the archive to commit")
    replica.stop()
    # the test's table has a prefix of its own: the snippet's catalog knows where it is
    assert IcebergTable(cfg.archive, Store(cfg.archive)).location.startswith("s3://")

    env = process_env(cfg)
    code = snippet("os", "SqlCatalog").replace('CATALOG = "sqlite:///data/archive/iceberg-catalog.db"',
                                               f"CATALOG = {catalog!r}")
    code = code.replace('"http://127.0.0.1:8333"', repr(cfg.archive.s3.endpoint))
    code = code.replace('os.environ.get("HEALTHPIPE_ARCHIVE__S3__ACCESS_KEY", "")',
                        repr(env["HEALTHPIPE_ARCHIVE__S3__ACCESS_KEY"]))
    code = code.replace('os.environ.get("HEALTHPIPE_ARCHIVE__S3__SECRET_KEY", "")',
                        repr(env["HEALTHPIPE_ARCHIVE__S3__SECRET_KEY"]))
    scope: dict = {}
    exec(code, scope)  # noqa: S102
    assert list(scope["per_instance"]["count"]) == [200] * 5
    assert scope["snapshots"] and all(op == "append" for _, op in scope["snapshots"])

    exec(snippet("duckdb", "to_duckdb"), scope)  # noqa: S102  (with the table the first snippet loaded)
    rows = scope["rows"]
    assert [(r[0], r[1]) for r in rows] == [(f"node-{i}", 200) for i in range(5)]
    means = {r[0]: r[2] for r in rows}
    for i in range(5):
        values = [p[3] for p in ledger.truth if dict(p[1])["instance"] == f"node-{i}"]
        assert abs(means[f"node-{i}"] - sum(values) / len(values)) < 1e-9
