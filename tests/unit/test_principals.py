"""Least privilege as data: what each role may do (healthpipe/common/principals.py), and the security settings
that carry a principal to librdkafka."""

from __future__ import annotations

import os

import pytest

from healthpipe.common.config import HealthpipeConfig, load_config
from healthpipe.common.errors import ConfigError
from healthpipe.common.principals import ROLES, influx_grants, kafka_grants

CFG = HealthpipeConfig()


def _ops(role: str, resource: str, name: str) -> set[str]:
    return {g.operation for g in kafka_grants(CFG, role) if g.resource == resource and g.name == name}  # type: ignore[arg-type]


def test_only_the_producer_writes_samples_and_nobody_else_writes_at_all_but_the_consumer_to_its_dlq():
    k = CFG.kafka
    writers = {role: {g.name for g in kafka_grants(CFG, role) if g.operation == "WRITE" and g.resource == "TOPIC"}
               for role in ROLES}
    assert writers == {"producer": {k.topic, k.watermark_topic}, "consumer": {k.dead_letter_topic},
                       "archive": set(), "reader": set(), "tiers": set()}


def test_each_group_is_read_by_its_own_role_only():
    assert _ops("consumer", "GROUP", CFG.kafka.group_id) == {"READ"}
    assert _ops("archive", "GROUP", CFG.archive.group_id) == {"READ"}
    assert _ops("reader", "GROUP", CFG.kafka.group_id) == {"DESCRIBE"}  # lag and verify: never a member
    assert _ops("producer", "GROUP", CFG.kafka.group_id) == set()


def test_influxdb_writes_belong_to_the_consumer_and_tiers_only():
    writes = {role: [str(g) for g in influx_grants(CFG, role) if g.action == "write"] for role in ROLES}
    assert writes == {"producer": [], "consumer": [f"write bucket {CFG.load.influxdb.bucket}"], "archive": [],
                      "reader": [], "tiers": ["write all buckets", "write all tasks"]}


def test_sasl_without_a_password_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match="kafka.security: .*needs a username and a password"):
        load_config(os.devnull, environment=False, kafka={"security": {"protocol": "SASL_SSL", "username": "u"}})


def test_the_password_comes_from_its_file_and_never_shows(tmp_path, monkeypatch):
    secret = tmp_path / "password"
    secret.write_text("pa55-from-a-file\n")
    monkeypatch.setenv("HEALTHPIPE_KAFKA__SECURITY__PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("HEALTHPIPE_KAFKA__SECURITY__USERNAME", "hp-consumer")
    monkeypatch.setenv("HEALTHPIPE_KAFKA__SECURITY__PASSWORD_FILE", str(secret))
    monkeypatch.setenv("HEALTHPIPE_LOAD__INFLUXDB__TOKEN_FILE", "")  # empty: unset, not the current directory
    cfg = load_config(os.devnull)
    assert cfg.kafka.as_librdkafka_dict()["sasl.password"] == "pa55-from-a-file"
    assert cfg.kafka.security.principal == "User:hp-consumer"
    assert "pa55-from-a-file" in cfg.secrets()
    assert "pa55-from-a-file" not in repr(cfg) and "pa55-from-a-file" not in cfg.model_dump_json()
