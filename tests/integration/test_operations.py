"""Operations on the real stack: `healthpipe check`, replay after an outage, backfill."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import requests

from healthpipe.common.errors import HealthpipeError
from healthpipe.ops.check import run as check
from healthpipe.sinks.influx import replay
from tests.support import influx, kafka
from tests.support.influx import iso
from tests.support.pipeline import ConsumerThread, committed_all, series_messages, wait_until, write_config

NOW_MS = int(time.time() * 1000) - 3_600_000


def loaded(cfg, run):
    return influx.run_points(cfg.load.influxdb, run)


def delete_window(cfg, run, start_ms, end_ms):
    s = cfg.load.influxdb
    requests.post(f"{s.url}/api/v2/delete", params={"org": s.org, "bucket": s.bucket}, timeout=30,
                  headers={"Authorization": f"Token {s.token.get_secret_value()}"},
                  json={"start": iso(start_ms), "stop": iso(end_ms), "predicate": f'run="{run}"'}).raise_for_status()


def test_check_passes_on_the_stack_and_names_a_broken_bucket(services, tmp_path, monkeypatch, capsys):
    cfg = services.config()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HEALTHPIPE_LOAD__INFLUXDB__TOKEN", services.influx_token)
    good = write_config(cfg, tmp_path / "good.yaml")
    assert check(str(good)) == 1  # topics do not exist yet
    assert "FAIL  kafka topics" in capsys.readouterr().out
    assert check(str(good), create_topics=True) == 0
    out = capsys.readouterr().out
    assert out.count("OK  ") == 6 and (tmp_path / "logs").is_dir() and (tmp_path / "data").is_dir()
    bad = write_config(cfg.model_copy(update={"load": cfg.load.model_copy(update={
        "influxdb": cfg.load.influxdb.model_copy(update={"bucket": "no-such-bucket"})})}), tmp_path / "bad.yaml")
    assert check(str(bad)) == 1
    out = capsys.readouterr().out
    assert "FAIL  influxdb" in out and "remedy:" in out and services.influx_token not in out
    # --json: the same verdicts as one document (docs/cli.md)
    assert check(str(bad), as_json=True) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and set(doc) == {"ok", "checks"}
    by_name = {c["name"]: c for c in doc["checks"]}
    assert by_name["influxdb"]["ok"] is False and "no-such-bucket" in by_name["influxdb"]["detail"]
    assert by_name["kafka topics"]["ok"] and by_name["influxdb"]["remedy"]
    assert all(set(c) == {"name", "ok", "detail", "remedy"} for c in doc["checks"])
    assert check(str(good), as_json=True) == 0 and json.loads(capsys.readouterr().out)["ok"] is True


def test_replay_a_deleted_window_brings_it_back_identical(services):
    cfg = services.config(consumer={"batch_max_age_seconds": 0.5})
    run = uuid.uuid4().hex
    messages, expected = series_messages(run, 5, 600, NOW_MS)  # 10 minutes at 1 s
    from healthpipe.common.kafka import ensure_topics

    ensure_topics(cfg)
    kafka.produce(cfg, cfg.kafka.topic, messages)
    replica = ConsumerThread(cfg, until_idle=3)
    replica.join()
    assert loaded(cfg, run) == expected
    committed_before = kafka.committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic)
    hole_start, hole_end = NOW_MS + 120_000, NOW_MS + 300_000  # an "outage" of 3 minutes of data
    delete_window(cfg, run, hole_start, hole_end)
    missing = {p for p in expected if hole_start <= p[1] <= hole_end}
    assert loaded(cfg, run) == expected - missing and missing
    replay.reload_range(None, iso(hole_start), iso(hole_end), cfg=cfg, progress=False)
    assert loaded(cfg, run) == expected
    # the main group's offsets were not touched
    assert kafka.committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic) == committed_before


def test_move_offsets_refuses_a_live_group_then_rewinds_a_stopped_one(services, tmp_path, monkeypatch, capsys):
    cfg = services.config(consumer={"batch_max_age_seconds": 0.5})
    from healthpipe.common.kafka import ensure_topics

    ensure_topics(cfg)
    run = uuid.uuid4().hex
    messages, expected = series_messages(run, 3, 50, NOW_MS)
    kafka.produce(cfg, cfg.kafka.topic, messages)
    monkeypatch.setenv("HEALTHPIPE_LOAD__INFLUXDB__TOKEN", services.influx_token)
    config_file = write_config(cfg, tmp_path / "c.yaml")
    live = ConsumerThread(cfg)
    wait_until(lambda: committed_all(cfg), 60, what="all committed")
    with pytest.raises(HealthpipeError, match="active members"):
        replay.move_offsets(str(config_file), cfg.kafka.group_id, None, to_earliest=True)
    live.stop()
    before = kafka.committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic)
    capsys.readouterr()
    assert replay.move_offsets(str(config_file), cfg.kafka.group_id, None, to_earliest=True, dry_run=True) == 0
    assert committed_all(cfg)  # a dry run changes nothing
    shown = capsys.readouterr().out  # "topic/p: committed -> target", the group's own committed offsets
    assert all(f"{cfg.kafka.topic}/{p}: {o} -> 0" in shown for p, o in before.items()), (before, shown)
    assert replay.move_offsets(str(config_file), cfg.kafka.group_id, None, to_earliest=True) == 0
    assert all(o == 0 for o in kafka.committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic).values())
    again = ConsumerThread(cfg, until_idle=3)
    again.join()
    assert again.metric("healthpipe_consumer_samples_written_total") == len(expected)  # re-loaded all
    assert loaded(cfg, run) == expected and committed_all(cfg)


def test_backfill_publishes_a_window_without_touching_watermarks(services, tmp_path, monkeypatch):
    from healthpipe.producer import backfill, watermarks
    from healthpipe.producer.service import ProducerService
    from tests.integration.test_producer import RAW_UP, prometheus_raw, published, wait_for_scrapes

    wait_for_scrapes(services, seconds=10)
    cfg = services.config(extract={"queries": [RAW_UP], "max_backfill": "1m", "lag_seconds": 1})
    live = ProducerService(cfg)
    live.initialize()
    live.run_single_cycle()
    live.close()
    # A read_committed reader sees the cycle's watermark once the transaction's markers are written, which the
    # broker does after the commit returns (on a broker just started, that takes a while)
    wait_until(lambda: watermarks.load(cfg), 30, what="the live cycle's watermark to become readable")
    marks = watermarks.load(cfg)
    assert set(marks) == {"availability"}
    end_ms = (int(time.time()) - 5) * 1000
    start_ms = end_ms - 8000
    monkeypatch.setenv("HEALTHPIPE_LOAD__INFLUXDB__TOKEN", services.influx_token)
    config_file = write_config(cfg, tmp_path / "c.yaml")
    before = len(published(cfg)[0])
    assert backfill.main(str(config_file), iso(start_ms), iso(end_ms), "availability") == 0
    assert watermarks.load(cfg) == marks  # untouched
    samples = published(cfg)[0][before:]
    assert set(samples) == prometheus_raw(services.prometheus_url, 'up{job="test-app"}', start_ms, end_ms)
    assert samples and len(samples) == len(set(samples))


def test_ensure_topics_creates_the_missing_ones_once_and_refuses_more_replicas_than_brokers(services):
    from confluent_kafka.admin import AdminClient

    from healthpipe.common.errors import ConfigError
    from healthpipe.common.kafka import ensure_topics, topic_specs

    cfg = services.config()
    specs = topic_specs(cfg)
    assert sorted(ensure_topics(cfg)) == sorted(s.name for s in specs)
    assert ensure_topics(cfg) == []  # asked by name, found: nothing created twice
    admin = AdminClient({"bootstrap.servers": cfg.kafka.bootstrap_servers})
    metadata = admin.list_topics(timeout=30)
    assert {s.name: len(metadata.topics[s.name].partitions) for s in specs} == {s.name: s.partitions for s in specs}
    too_many = services.config(kafka={"replication_factor": len(metadata.brokers) + 1})
    with pytest.raises(ConfigError, match="replication_factor"):
        ensure_topics(too_many)
    assert not {s.name for s in topic_specs(too_many)} & set(admin.list_topics(timeout=30).topics)
