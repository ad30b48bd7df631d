"""The cold tier as an Iceberg table (`archive.format: iceberg`) against the real stack: a known ledger in, exactly
the ledger out through pyiceberg, on a local directory and on the stack's S3 server (SeaweedFS); each snapshot
records the Kafka offsets it covers; an archiver whose snapshot went in but whose offsets did not resumes from the
table, not from the group."""

from __future__ import annotations

import json
import os
import signal as signal_module
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from healthpipe.common.kafka import ensure_topics
from healthpipe.sinks.archive.iceberg import IcebergTable
from healthpipe.sinks.archive.service import archiver
from healthpipe.sinks.archive.store import Store
from tests.chaos.ledger import generate
from tests.integration.test_archive import archive_config, truth
from tests.support import kafka
from tests.support.pipeline import ConsumerThread, committed_all, process_env, wait_until, write_config


def iceberg_config(services, target, tmp_path, **archive):
    # the catalog: a SQLite file of this test's own (on S3 the table's files are in the bucket, the catalog here)
    return archive_config(services, target, tmp_path, format="iceberg",
                          iceberg={"catalog_uri": f"sqlite:///{tmp_path / 'catalog.db'}"}, **archive)


def table_of(cfg) -> IcebergTable:
    return IcebergTable(cfg.archive, Store(cfg.archive))


def rows(table: pa.Table) -> list[tuple]:
    return [(dict(labels)["instance"], round(ts.timestamp() * 1000), value) for labels, ts, value in
            zip(table["labels"].to_pylist(), table["ts"].to_pylist(), table["value"].to_pylist(), strict=True)]


def archived(cfg, snapshot_id=None) -> set:
    got = rows(table_of(cfg).read(["ts", "value", "labels"], snapshot_id=snapshot_id))
    keys = [(i, ts) for i, ts, _ in got]
    assert len(keys) == len(set(keys)), f"{len(keys) - len(set(keys))} duplicate rows"
    return set(got)


@pytest.mark.parametrize("target", ["local", "s3"])
def test_a_known_ledger_is_an_iceberg_table_exactly(services, tmp_path, target):
    cfg = iceberg_config(services, target, tmp_path)
    ensure_topics(cfg)
    ledger = generate(51, 30, 1000, per_message=100)
    kafka.produce(cfg, cfg.kafka.topic, ledger.messages)
    replica = ConsumerThread(cfg, service=archiver(cfg))
    wait_until(lambda: committed_all(cfg, cfg.archive.group_id), 120, what="the archive group to commit everything")
    replica.stop()
    assert archived(cfg) == truth(ledger)
    table = table_of(cfg)
    # the newest snapshot records exactly the offsets the group committed
    committed = kafka.committed_offsets(cfg, cfg.archive.group_id, cfg.kafka.topic)
    recorded = table.offsets(cfg.archive.group_id)
    assert recorded and recorded == {(cfg.kafka.topic, p): o for p, o in committed.items() if o >= 0}
    # the files are the archiver's own: under the table's data/ts_day=... folders, named by their offsets
    parts = list(table.partitions())
    assert parts and all(p.day.startswith("ts_day=") for p in parts)
    assert all("/data/ts_day=" in f.file_path and f"{cfg.kafka.topic}+" in f.file_path for p in parts for f in p.files)
    assert sum(p.rows for p in parts) == len(ledger.truth)
    schema = table.table().schema()
    assert [f.name for f in schema.fields] == ["ts", "value", "metric", "query", "metric_type", "series", "labels"]
    assert str(table.table().spec().fields[0].transform) == "day"
    assert replica.metric("healthpipe_archive_snapshots_total") >= 1


def test_an_archiver_whose_offsets_were_not_committed_resumes_from_the_table(services, tmp_path):
    """The crash between a snapshot's commit and the offsets' commit, made exact: the snapshots are in the table,
    then the group's offsets are put back to where they were before (as if the process died before committing).
    A new archiver re-reads those records; it must skip every one (the table says it holds them) and commit the
    table's offsets: no row twice, no new snapshot. Two defences stand in the way (the skip on reading, and the
    commit leaving out ranges the table holds); with both gone (mutant iceberg_resumes_from_the_group) the ranges
    are cut and committed again, and only pyiceberg's refusal of files the table already names stops a re-cut that
    happens to give the same names (a different cut would not be stopped). The count of skipped records catches
    the skip gone, whichever defence is left."""
    cfg = iceberg_config(services, "local", tmp_path)
    ensure_topics(cfg)
    ledger = generate(52, 20, 1000, per_message=100)
    kafka.produce(cfg, cfg.kafka.topic, ledger.messages)
    first = ConsumerThread(cfg, service=archiver(cfg))
    wait_until(lambda: committed_all(cfg, cfg.archive.group_id), 120, what="the archive group to commit everything")
    first.stop()
    snapshot = table_of(cfg).snapshot_id()
    assert archived(cfg) == truth(ledger)
    # the group forgets: its offsets go back to the start, the table keeps what it has
    kafka.reset_offsets(cfg, cfg.archive.group_id, cfg.kafka.topic, 0)
    assert all(o <= 0 for o in kafka.committed_offsets(cfg, cfg.archive.group_id, cfg.kafka.topic).values())
    second = ConsumerThread(cfg, service=archiver(cfg))
    wait_until(lambda: committed_all(cfg, cfg.archive.group_id), 120, what="the group to commit the table's offsets")
    second.stop()
    assert table_of(cfg).snapshot_id() == snapshot  # nothing new was committed
    assert archived(cfg) == truth(ledger)
    assert second.metric("healthpipe_archive_records_skipped_total") == len(ledger.messages)


def compact_cli(cfg, tmp_path, *args: str, env: dict | None = None) -> subprocess.Popen:
    config_file = write_config(cfg, tmp_path / "compact.yaml")
    return subprocess.Popen([sys.executable, "-m", "healthpipe", "archive", "compact", "--config", str(config_file),
                             "--json", *args], env={**process_env(cfg), **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def pause_env(moment: str, paused: Path, resume: Path | None = None) -> dict[str, str]:
    # ahead of the caller's PYTHONPATH, not instead of it (the mutation runner puts the mutated tree there)
    path = os.pathsep.join(p for p in (str(Path(__file__).parents[1] / "support" / "pause_compaction"),
                                       os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path,
           "HP_TEST_COMPACT_PAUSE": moment, "HP_TEST_COMPACT_SIGNAL": str(paused)}
    return env | ({"HP_TEST_COMPACT_RESUME": str(resume)} if resume else {})


def archive_twice(services, tmp_path, seed: int):
    """A ledger archived twice over (the same messages produced again, as a replay does): every sample two rows."""
    cfg = iceberg_config(services, "local", tmp_path)
    ensure_topics(cfg)
    ledger = generate(seed, 20, 1000, per_message=100)
    kafka.produce(cfg, cfg.kafka.topic, ledger.messages + ledger.messages)
    replica = ConsumerThread(cfg, service=archiver(cfg))
    wait_until(lambda: committed_all(cfg, cfg.archive.group_id), 120, what="the archive group to commit everything")
    return cfg, ledger, replica


def all_rows(cfg, snapshot_id=None) -> list[tuple]:
    return rows(table_of(cfg).read(["ts", "value", "labels"], snapshot_id=snapshot_id))


def test_compaction_removes_duplicates_in_one_snapshot_while_the_archiver_writes(services, tmp_path):
    """A replayed ledger (every sample twice) is compacted by `healthpipe archive compact` while the archiver
    keeps adding a second ledger: one overwrite snapshot per day replaces the day's files by sorted ones without a
    duplicate; the archiver's snapshots land before, during and after it; in the end the table is both ledgers
    exactly, and the snapshot before the compaction still reads every row twice (readers keep their snapshot)."""
    cfg, ledger, replica = archive_twice(services, tmp_path, 53)
    before = table_of(cfg).snapshot_id()
    assert sorted(all_rows(cfg)) == sorted(list(truth(ledger)) * 2)
    second = generate(54, 20, 1000, per_message=100)

    def feed():  # the second ledger, ten messages at a time, while compaction runs
        for i in range(0, len(second.messages), 10):
            kafka.produce(cfg, cfg.kafka.topic, second.messages[i:i + 10])
            time.sleep(0.2)

    feeder = threading.Thread(target=feed)
    feeder.start()
    # the compaction stops once its files are written, before its commit, until the archiver has committed some
    # of the second ledger on top of the snapshot it planned from: the two writers really interleave
    paused, resume = tmp_path / "paused", tmp_path / "resume"
    compaction = compact_cli(cfg, tmp_path, env=pause_env("before_commit", paused, resume))
    wait_until(paused.exists, 60, what="compaction to write its files")
    planned = table_of(cfg).snapshot_id()
    wait_until(lambda: table_of(cfg).snapshot_id() != planned, 60, what="the archiver to commit meanwhile")
    resume.touch()
    out, err = compaction.communicate(timeout=120)
    feeder.join()
    assert compaction.returncode == 0, err
    results = json.loads(out)
    assert results and sum(r["duplicates_removed"] for r in results) == len(ledger.truth)
    assert all(r["snapshot"] is not None for r in results)
    wait_until(lambda: committed_all(cfg, cfg.archive.group_id), 120, what="the second ledger to be archived")
    replica.stop()
    table = table_of(cfg).table(refresh=True)
    assert archived(cfg) == truth(ledger) | truth(second)
    assert sorted(all_rows(cfg, snapshot_id=before)) == sorted(list(truth(ledger)) * 2)  # time travel
    compacted = [s for s in table.snapshots() if s.summary.operation.value == "overwrite"]
    assert len(compacted) == len(results)
    assert all(s.summary.additional_properties.get("healthpipe.offsets." + cfg.archive.group_id) for s in compacted)
    for p in table_of(cfg).partitions():  # each compacted file sorted by (series, ts)
        for f in p.files:
            if "/compacted-" in f.file_path:
                t = pq.read_table(f.file_path.removeprefix("file://"), columns=["series", "ts"])
                keys = list(zip(t["series"].to_pylist(), t["ts"].to_pylist(), strict=True))
                assert keys == sorted(keys) and len(keys) == len(set(keys))


@pytest.mark.parametrize("moment", ["reading", "before_commit", "after_commit"])
def test_kill_9_during_compaction_leaves_the_table_as_it_was_or_compacted(services, tmp_path, moment):
    """kill -9 of `archive compact` stopped at a moment (tests/support/pause_compaction): while reading the day's
    files, with the compacted files written but not committed (work in flight: files on disk no snapshot names),
    and right after the commit. The table is exactly as before (the same files, every row twice) or exactly
    compacted (the ledger once); a second compaction then finishes the job."""
    cfg, ledger, replica = archive_twice(services, tmp_path, 55)
    replica.stop()
    files_before = {f.file_path for p in table_of(cfg).partitions() for f in p.files}
    signal = tmp_path / "paused"
    compaction = compact_cli(cfg, tmp_path, env=pause_env(moment, signal))
    wait_until(signal.exists, 60, what=f"compaction to reach {moment}")
    compaction.send_signal(signal_module.SIGKILL)
    compaction.wait(10)
    files_now = {f.file_path for p in table_of(cfg).partitions() for f in p.files}
    on_disk = {f"file://{Store(cfg.archive).root}/{p}" for p, _ in Store(cfg.archive).list() if p.endswith(".parquet")}
    if moment == "after_commit":
        assert archived(cfg) == truth(ledger) and not files_now & files_before
    else:
        assert files_now == files_before and sorted(all_rows(cfg)) == sorted(list(truth(ledger)) * 2)
        if moment == "before_commit":  # the kill hit written, uncommitted files
            assert [f for f in on_disk - files_now if "/compacted-" in f]
    finish = compact_cli(cfg, tmp_path)
    out, err = finish.communicate(timeout=120)
    assert finish.returncode == 0, err
    assert archived(cfg) == truth(ledger)


def test_a_reader_during_compaction_sees_a_whole_snapshot_every_time(services, tmp_path):
    """Readers loop over the table while `archive compact` runs: every read is the table before (every row
    twice) or after (once), never a mix; both kinds are seen. A reader that planned its scan before the commit
    and reads its files after it still gets the old snapshot whole (the replaced files are not deleted). And every
    snapshot of the history is whole: a compaction that took a day's files out in one commit and put the new ones
    in with another would leave one that is neither (mutant compaction_commits_in_two_snapshots)."""
    cfg, ledger, replica = archive_twice(services, tmp_path, 56)
    replica.stop()
    before, after = sorted(list(truth(ledger)) * 2), sorted(truth(ledger))
    paused, resume = tmp_path / "paused", tmp_path / "resume"
    compaction = compact_cli(cfg, tmp_path, env=pause_env("before_commit", paused, resume))
    seen = {"before": 0, "after": 0, "torn": 0}

    def read_until_done():
        while compaction.poll() is None or not seen["after"]:
            got = sorted(all_rows(cfg))
            seen["before" if got == before else "after" if got == after else "torn"] += 1

    reader = threading.Thread(target=read_until_done)
    reader.start()
    wait_until(paused.exists, 60, what="compaction to write its files")
    table = table_of(cfg).table(refresh=True)
    planned_at = table.current_snapshot().snapshot_id
    planned = [task.file.file_path for task in table.scan().plan_files()]  # a scan planned before the commit
    wait_until(lambda: seen["before"] >= 2, 60, what="reads before the commit")
    resume.touch()
    out, err = compaction.communicate(timeout=120)
    reader.join(120)
    assert compaction.returncode == 0, err
    assert seen["torn"] == 0 and seen["before"] >= 2 and seen["after"] >= 1, seen
    late = pa.concat_tables([pq.read_table(path.removeprefix("file://"), columns=["ts", "value", "labels"])
                             for path in planned])
    assert sorted(rows(late)) == before  # read after the commit: the old snapshot, whole
    assert sorted(all_rows(cfg)) == after
    # and whichever snapshot a reader happened to get, there is none in between: each is before or after, whole
    history = [s.snapshot_id for s in table_of(cfg).table(refresh=True).snapshots()]
    history = history[history.index(planned_at):]  # from the one the compaction planned from
    assert all(sorted(all_rows(cfg, snapshot_id=s)) in (before, after) for s in history), history


@pytest.mark.parametrize("target", ["local", "s3"])
def test_expiry_keeps_the_newest_snapshots_deletes_only_their_dead_files_and_the_archiver_goes_on(
        services, tmp_path, monkeypatch, target):
    """A replayed ledger archived in many small snapshots, then compacted (the replaced files are dead once the
    snapshots before the compaction go): the archiver itself expires after each commit (EVERY_SECONDS 0 here)
    down to `keep_snapshots` 3; afterwards exactly 3 snapshots remain, the store holds exactly the files they
    reach (data, manifests, manifest lists: every replaced file deleted, none still read), at most 21 metadata
    files, the table is the ledger without a duplicate, and the archiver, restarted, resumes from the kept
    snapshot's offsets: a second ledger lands exactly once."""
    from healthpipe.sinks.archive import expire as expire_module
    from healthpipe.sinks.archive.compact import compact

    monkeypatch.setattr(expire_module, "EVERY_SECONDS", 0)
    cfg = archive_config(services, target, tmp_path, format="iceberg", max_file_rows=2000,
                         iceberg={"catalog_uri": f"sqlite:///{tmp_path / 'catalog.db'}", "keep_snapshots": 3})
    ensure_topics(cfg)
    ledger = generate(55, 20, 1000, per_message=100)
    kafka.produce(cfg, cfg.kafka.topic, ledger.messages + ledger.messages)
    replica = ConsumerThread(cfg, service=archiver(cfg))
    wait_until(lambda: committed_all(cfg, cfg.archive.group_id), 120, what="the archive group to commit everything")
    replica.stop()
    table = table_of(cfg)
    assert replica.metric("healthpipe_archive_snapshots_total") > 3  # more commits than are kept
    assert len(table.table(refresh=True).metadata.snapshots) <= 3 + 1  # the archiver expired as it went
    results = compact(table, None, cfg.archive.iceberg.compact_file_rows)
    assert sum(r.duplicates_removed for r in results) == len(ledger.truth)
    # the fault-free upkeep the archiver runs, here by hand: the compaction's snapshot plus two before it stay
    done = expire_module.expire(table, 3)
    assert done.snapshots_expired >= 1 and done.files_deleted >= 1, done
    iceberg = table.table(refresh=True)
    assert len(iceberg.metadata.snapshots) == 3
    reached = expire_module.Reach().files(iceberg, list(iceberg.metadata.snapshots))
    root = table.uri("") + "/"
    stored = {root + rel for rel, _ in table.store.list(table.rel)}
    assert {p for p in stored if "/data/" in p} == {p for p in reached if "/data/" in p}  # no dead data file left
    assert {p for p in stored if p.endswith(".avro")} == {p for p in reached if p.endswith(".avro")}
    assert len([rel for rel, _ in table.store.list(table.rel) if rel.endswith(".metadata.json")]) <= 21
    # remove-orphans, judging every file old (a clock a day ahead), finds none: it reaches what the table keeps on
    # this store, metadata files included; a file no snapshot reaches is found by its path on the store
    from healthpipe.sinks.archive.orphans import find

    assert find(table, 3600, now=time.time() + 86400).files == []
    stray = f"{table.rel}/data/ts_day=2026-12-01/a-killed-writers.parquet"
    table.store.put(stray, b"never committed")
    assert find(table, 3600, now=time.time() + 86400).files == [stray]
    assert find(table, 3600).files == []  # but not while it is new
    table.store.delete(stray)
    assert archived(cfg) == truth(ledger)
    # the archiver resumes from the kept snapshot's offsets
    second = generate(56, 20, 1000, per_message=100)
    kafka.produce(cfg, cfg.kafka.topic, second.messages)
    replica = ConsumerThread(cfg, service=archiver(cfg))
    wait_until(lambda: committed_all(cfg, cfg.archive.group_id), 120, what="the second ledger to be archived")
    replica.stop()
    assert archived(cfg) == truth(ledger) | truth(second)
