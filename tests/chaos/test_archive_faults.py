"""The archive under faults: kill -9 at random moments (mid-range, mid-upload) and the S3 server down. Always:
exactly the ledger, no duplicate row, no partial or temporary file visible."""

from __future__ import annotations

import random
import time

import pyarrow.parquet as pq

from healthpipe.common.kafka import ensure_topics
from healthpipe.ops import stack
from healthpipe.sinks.archive import layout
from healthpipe.sinks.archive.store import Store
from tests.chaos.ledger import generate
from tests.integration.test_archive import archive_config, archived, truth
from tests.support import kafka
from tests.support.faults import FaultProxy
from tests.support.pipeline import ConsumerProcess, committed_all, holds_uncommitted_work, wait_until


def assert_clean(store: Store) -> None:
    """No temporary file, every file readable whole, and no intent left for a committed range."""
    paths = [p for p, _ in store.list()]
    assert not [p for p in paths if ".tmp-" in p]
    for p in paths:
        if p.endswith(".parquet"):
            assert layout.parse(p) is not None
            pq.read_metadata(store.fs.open_input_file(f"{store.root}/{p}"))  # a truncated file fails here


def test_22_archiver_killed_9_at_10_moments_mid_range_and_mid_upload(native, tmp_path):
    """S3 behind the fault proxy with 0.4 s per request, small files: most kills land during an upload. Each kill
    must hit uncommitted work, and at least 3 of the 10 must land while a PUT (an upload) is unanswered."""
    proxy = FaultProxy(native.s3["endpoint"], keep_host=True)
    proxy.delay = 0.4
    try:
        direct = archive_config(native, "s3", tmp_path, max_file_rows=3000, max_file_age_seconds=1)
        cfg = direct.model_copy(update={"archive": direct.archive.model_copy(update={
            "s3": direct.archive.s3.model_copy(update={"endpoint": proxy.url})})})
        ensure_topics(cfg)
        ledger = generate(22, 60, 1000, per_message=100)
        kafka.produce(cfg, cfg.kafka.topic, ledger.messages)
        rng = random.Random(22)
        log = tmp_path / "archive.log"
        uploads_at_kill = []
        for _ in range(10):
            replica = ConsumerProcess(cfg, tmp_path, log, kind="archive")
            replica.wait_for("uncommitted work", holds_uncommitted_work)
            time.sleep(rng.uniform(0.5, 3.0))
            # an upload started and not completed: a PUT the archive sent that S3 has not answered (LIST, HEAD
            # and DELETE requests are not uploads)
            at_kill, in_upload = replica.metrics(), proxy.in_flight_by_method.get("PUT", 0)
            replica.kill_9()
            assert holds_uncommitted_work(at_kill), at_kill
            assert not committed_all(cfg, cfg.archive.group_id)
            uploads_at_kill.append(in_upload)
        assert sum(1 for n in uploads_at_kill if n > 0) >= 3, f"too few kills mid-upload: {uploads_at_kill}"
        proxy.delay = 0.0
        last = ConsumerProcess(cfg, tmp_path, log, kind="archive")
        wait_until(lambda: committed_all(cfg, cfg.archive.group_id), 300, what="the archive to finish")
        assert last.terminate() == 0
    finally:
        proxy.close()
    assert archived(direct, ledger) == truth(ledger)  # exactly: archived() also fails on any duplicate row
    assert_clean(Store(direct.archive))


def test_23_s3_down_30s_pauses_then_exact(native, tmp_path):
    cfg = archive_config(native, "s3", tmp_path, max_file_rows=5000, max_file_age_seconds=1)
    ensure_topics(cfg)
    ledger = generate(23, 40, 1000, per_message=100)
    kafka.produce(cfg, cfg.kafka.topic, ledger.messages[:200])
    log = tmp_path / "archive.log"
    replica = ConsumerProcess(cfg, tmp_path, log, kind="archive")
    replica.wait_for("files written", lambda m: m.get("healthpipe_archive_files_written_total", 0) > 0)
    s3 = stack.service("s3")
    stack.stop(s3)
    try:
        kafka.produce(cfg, cfg.kafka.topic, ledger.messages[200:])
        replica.wait_for("paused on the store", lambda m: m.get("healthpipe_consumer_paused", 0) == 1, timeout=120)
        at_fault = replica.metrics()
        assert holds_uncommitted_work(at_fault)
        before = kafka.committed_offsets(cfg, cfg.archive.group_id, cfg.kafka.topic)
        time.sleep(30)
        assert kafka.committed_offsets(cfg, cfg.archive.group_id, cfg.kafka.topic) == before
        assert replica.proc.poll() is None  # holding, not dead
    finally:
        stack.start(s3)
    wait_until(lambda: committed_all(cfg, cfg.archive.group_id), 300, what="the archive to drain")
    assert replica.terminate() == 0
    assert archived(cfg, ledger) == truth(ledger)
    assert_clean(Store(cfg.archive))
