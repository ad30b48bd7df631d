"""The archive under faults: kill -9 at random moments (mid-range, mid-upload) and the S3 server down. Always:
exactly the ledger, no duplicate row, no partial or temporary file visible."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pyarrow.parquet as pq

from healthpipe.common.kafka import ensure_topics
from healthpipe.ops import stack
from healthpipe.sinks.archive import layout
from healthpipe.sinks.archive.store import Store
from tests.chaos.ledger import generate
from tests.integration.test_archive import archive_config, archived, truth
from tests.support import kafka
from tests.support.faults import FaultProxy
from tests.support.pipeline import REJOIN_SOON, ConsumerProcess, committed_all, holds_uncommitted_work, wait_until


def assert_clean(store: Store) -> None:
    """No temporary file, every file readable whole, and no intent left for a committed range."""
    paths = [p for p, _ in store.list()]
    assert not [p for p in paths if ".tmp-" in p]
    for p in paths:
        if p.endswith(".parquet"):
            assert layout.parse(p) is not None
            pq.read_metadata(store.fs.open_input_file(f"{store.root}/{p}"))  # a truncated file fails here


def behind(proxy: FaultProxy, direct):
    """(the config as is, the same config with the archive reaching S3 through `proxy`)."""
    return direct, direct.model_copy(update={"archive": direct.archive.model_copy(update={
        "s3": direct.archive.s3.model_copy(update={"endpoint": proxy.url})})})


def finish(cfg, tmp_path, log) -> None:
    """One more archive process, until its group has committed everything; SIGTERM must then exit 0."""
    last = ConsumerProcess(cfg, tmp_path, log, kind="archive")
    wait_until(lambda: committed_all(cfg, cfg.archive.group_id), 300, what="the archive to finish")
    assert last.terminate() == 0


def test_22_archiver_killed_9_at_10_moments_mid_range_and_mid_upload(native, tmp_path):
    """S3 behind the fault proxy with 0.4 s per request, small files. Five kills at random moments (mid-range),
    five the moment an upload is in flight. Each kill must hit uncommitted work, and at least 5 of the 10 must land
    while a PUT is unanswered (before, any S3 request counted as an upload: 1 kill in 10 truly hit one)."""
    proxy = FaultProxy(native.s3["endpoint"], keep_host=True)
    proxy.delay = 0.4
    try:
        direct, cfg = behind(proxy, archive_config(native, "s3", tmp_path, consumer=REJOIN_SOON,
                                                       max_file_rows=3000, max_file_age_seconds=1))
        ensure_topics(cfg)
        ledger = generate(22, 60, 1000, per_message=100)
        kafka.produce(cfg, cfg.kafka.topic, ledger.messages)
        rng = random.Random(22)
        log = tmp_path / "archive.log"
        uploads_at_kill = []
        for kill in range(10):
            replica = ConsumerProcess(cfg, tmp_path, log, kind="archive")
            replica.wait_for("uncommitted work", holds_uncommitted_work)
            time.sleep(rng.uniform(0.5, 3.0))
            if kill % 2:  # every other kill waits for an upload: a PUT the archive sent and S3 has not answered
                wait_until(lambda: proxy.in_flight_by_method.get("PUT", 0) > 0, 30, interval=0.01,
                           what="an upload in flight")
            at_kill, in_upload = replica.metrics(), proxy.in_flight_by_method.get("PUT", 0)
            replica.kill_9()
            assert holds_uncommitted_work(at_kill), at_kill
            assert not committed_all(cfg, cfg.archive.group_id)
            uploads_at_kill.append(in_upload)
        # (LIST, HEAD and DELETE requests are not uploads: only PUTs count)
        assert sum(1 for n in uploads_at_kill if n > 0) >= 5, f"too few kills mid-upload: {uploads_at_kill}"
        proxy.delay = 0.0
        finish(cfg, tmp_path, log)
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


def test_25_an_intent_left_by_a_kill_is_cut_again_committed_and_removed(native, tmp_path):
    """kill -9 after a range's intent is written and before the range is committed: the restart finds the intent,
    cuts the range again at exactly its offsets (the same file names, the same bytes), commits it and deletes
    the intent. The kill must land in that gap: an intent on S3 whose range is not committed, checked right
    after the kill; otherwise the test fails. Checked against a restart that skips recovery: rows come out
    twice."""
    proxy = FaultProxy(native.s3["endpoint"], keep_host=True)
    proxy.delay = 0.4  # each PUT takes 0.4 s: an intent is written well before its range's files and commit
    try:
        direct, cfg = behind(proxy, archive_config(native, "s3", tmp_path, max_file_rows=5000, max_file_age_seconds=1))
        ensure_topics(cfg)
        ledger = generate(25, 30, 1000, per_message=100)
        kafka.produce(cfg, cfg.kafka.topic, ledger.messages)
        store = Store(direct.archive)
        log = tmp_path / "archive.log"
        replica = ConsumerProcess(cfg, tmp_path, log, kind="archive")
        wait_until(lambda: any(f"/{layout.RANGES}/" in f"/{p}" for p, _ in store.list()), 60, interval=0.02,
                   what="an intent written")
        replica.kill_9()
        committed = kafka.committed_offsets(cfg, cfg.archive.group_id, cfg.kafka.topic)
        left = [layout.parse_marker(p.rpartition("/")[2]) + (int(p.split("/")[-2]),)
                for p, _ in store.list(layout.RANGES)]
        uncommitted = [(first, last, part) for first, last, part in left if committed.get(part, -1) <= last]
        assert uncommitted, f"the kill hit no intent of an uncommitted range: {left}, committed {committed}"
        proxy.delay = 0.0
        finish(cfg, tmp_path, log)
    finally:
        proxy.close()
    assert "archive_recovery" in log.read_text()  # the restart re-cut the range it found
    assert archived(direct, ledger) == truth(ledger)
    assert store.list(layout.RANGES) == []  # every intent of a committed range is deleted
    assert_clean(store)


def iceberg_on_s3(native, tmp_path, **archive):
    return archive_config(native, "s3", tmp_path, format="iceberg",
                          iceberg={"catalog_uri": f"sqlite:///{tmp_path / 'catalog.db'}"}, **archive)


def iceberg_rows(cfg) -> set:
    from tests.integration.test_archive_iceberg import archived as iceberg_archived

    return iceberg_archived(cfg)


def assert_iceberg_clean(cfg) -> None:
    """Every file the table names is whole, and no temporary object is left."""
    from healthpipe.sinks.archive.iceberg import IcebergTable

    store = Store(cfg.archive)
    assert not [p for p, _ in store.list() if ".tmp-" in p]
    for part in IcebergTable(cfg.archive, store).partitions():
        for f in part.files:
            pq.read_metadata(store.fs.open_input_file(f.file_path.split("://", 1)[1]))


def test_31_iceberg_archiver_killed_9_at_10_moments_including_between_snapshot_and_offsets(native, tmp_path):
    """archive.format iceberg on S3 behind the fault proxy (0.3 s per request). Ten kill -9s: at random moments
    holding uncommitted work, every other one with an upload in flight, and two of them (kills 4 and 9) in the gap
    that makes exactly-once hard: the snapshot is committed, the group's offsets are not (tests/support/
    pause_archive stops the process there; the table's offsets must then be ahead of the group's, or the kill
    missed the gap and the test fails). In the end the table is exactly the ledger, no row twice."""
    from healthpipe.sinks.archive.iceberg import IcebergTable

    proxy = FaultProxy(native.s3["endpoint"], keep_host=True)
    proxy.delay = 0.3
    try:
        direct, cfg = behind(proxy, iceberg_on_s3(native, tmp_path, consumer=REJOIN_SOON,
                                                      max_file_rows=3000, max_file_age_seconds=1))
        ensure_topics(cfg)
        ledger = generate(31, 60, 1000, per_message=100)
        kafka.produce(cfg, cfg.kafka.topic, ledger.messages)
        rng = random.Random(31)
        log = tmp_path / "archive.log"
        uploads_at_kill, gaps = [], []
        for kill in range(10):
            if kill in (4, 9):
                signal = tmp_path / f"snapshot-{kill}"
                replica = ConsumerProcess(cfg, tmp_path, log, kind="archive", env={
                    "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).parents[1] / "support" /
                                                                  "pause_archive"),
                                                              os.environ.get("PYTHONPATH", "")) if p),
                    "HP_TEST_ARCHIVE_PAUSE_SIGNAL": str(signal)})
                wait_until(signal.exists, 120, what="a snapshot committed")
                replica.kill_9()
                table = IcebergTable(direct.archive, Store(direct.archive)).offsets(cfg.archive.group_id)
                group = kafka.committed_offsets(cfg, cfg.archive.group_id, cfg.kafka.topic)
                ahead = {key: o for key, o in table.items() if o > group.get(key[1], -1)}
                assert ahead, f"the kill missed the gap: table {table}, group {group}"
                gaps.append(ahead)
                continue
            replica = ConsumerProcess(cfg, tmp_path, log, kind="archive")
            replica.wait_for("uncommitted work", holds_uncommitted_work)
            time.sleep(rng.uniform(0.5, 3.0))
            if kill % 2:
                wait_until(lambda: proxy.in_flight_by_method.get("PUT", 0) > 0, 30, interval=0.01,
                           what="an upload in flight")
            at_kill, in_upload = replica.metrics(), proxy.in_flight_by_method.get("PUT", 0)
            replica.kill_9()
            assert holds_uncommitted_work(at_kill), at_kill
            uploads_at_kill.append(in_upload)
        assert sum(1 for n in uploads_at_kill if n > 0) >= 4, f"too few kills mid-upload: {uploads_at_kill}"
        proxy.delay = 0.0
        finish(cfg, tmp_path, log)
    finally:
        proxy.close()
    assert "archive_resume_from_table" in log.read_text()  # a restart skipped what the table already held
    assert iceberg_rows(direct) == truth(ledger)  # exactly: the reader fails on any duplicate row
    assert_iceberg_clean(direct)


def test_32_iceberg_s3_down_30s_pauses_then_exact(native, tmp_path):
    """archive.format iceberg, S3 stopped for 30 s with ranges sealed and uncommitted: the archiver holds (no
    offset committed, the process alive), then drains once S3 is back; the table is exactly the ledger."""
    cfg = iceberg_on_s3(native, tmp_path, max_file_rows=5000, max_file_age_seconds=1)
    ensure_topics(cfg)
    ledger = generate(32, 40, 1000, per_message=100)
    kafka.produce(cfg, cfg.kafka.topic, ledger.messages[:200])
    log = tmp_path / "archive.log"
    replica = ConsumerProcess(cfg, tmp_path, log, kind="archive")
    replica.wait_for("a snapshot committed", lambda m: m.get("healthpipe_archive_snapshots_total", 0) > 0)
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
    assert iceberg_rows(cfg) == truth(ledger)
    assert_iceberg_clean(cfg)
