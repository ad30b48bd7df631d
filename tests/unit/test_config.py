import os

import pytest

from healthpipe.common.config import load_config
from healthpipe.common.errors import ConfigError


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_defaults_keep_the_plans_shape(tmp_path):
    cfg = load_config(write(tmp_path, ""))
    assert cfg.load.influxdb.bucket == "health_metrics"
    assert [q.name for q in cfg.extract.queries] == ["availability", "request_rate", "latency_p95", "error_rate"]
    assert cfg.poll_interval_seconds == cfg.pipeline.interval_seconds == 15
    assert cfg.kafka.partitions >= 6


def test_unknown_key_names_its_path(tmp_path):
    with pytest.raises(ConfigError, match=r"load\.influxdb\.buckt: unknown key"):
        load_config(write(tmp_path, "load:\n  influxdb:\n    buckt: x\n"))


def test_wrong_type_names_path_and_expectation(tmp_path):
    with pytest.raises(ConfigError, match=r"kafka\.partitions: .*integer"):
        load_config(write(tmp_path, "kafka:\n  partitions: many\n"))


def test_unknown_mode_names_the_query(tmp_path):
    text = "extract:\n  queries:\n    - {name: q1, promql: up, mode: fancy}\n"
    with pytest.raises(ConfigError, match=r"extract\.queries\.0\.mode"):
        load_config(write(tmp_path, text))


def test_env_overrides_yaml_key_by_key(tmp_path, monkeypatch):
    monkeypatch.setenv("HEALTHPIPE_LOAD__INFLUXDB__TOKEN", "from-env")
    monkeypatch.setenv("HEALTHPIPE_KAFKA__PARTITIONS", "12")
    cfg = load_config(write(tmp_path, "load:\n  influxdb:\n    bucket: b1\n    token: from-file\n"))
    assert cfg.load.influxdb.token.get_secret_value() == "from-env"
    assert cfg.load.influxdb.bucket == "b1"
    assert cfg.kafka.partitions == 12


def test_token_file(tmp_path):
    (tmp_path / "tok").write_text("s3cret\n")
    cfg = load_config(write(tmp_path, f"load:\n  influxdb:\n    token_file: {tmp_path / 'tok'}\n"))
    assert cfg.load.influxdb.token.get_secret_value() == "s3cret"
    assert "s3cret" in cfg.secrets()


def test_secrets_never_in_errors_or_repr(tmp_path):
    secret = "tok-very-secret-123"
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, f"load:\n  influxdb:\n    token: {secret}\n    timeout_seconds: {secret}\n"))
    assert secret not in str(exc.value)
    cfg = load_config(write(tmp_path, f"load:\n  influxdb:\n    token: {secret}\n"))
    assert secret not in repr(cfg) and secret not in str(cfg.model_dump())


def test_kafka_client_secrets_never_in_repr_or_dumps_but_reach_librdkafka_and_the_scrubber():
    password, key = "sasl-p4ss-w0rd", "-----BEGIN PRIVATE KEY-----MIIEv"
    cfg = load_config(path=os.devnull, environment=False, kafka={"client_config": {
        "security.protocol": "SASL_SSL", "sasl.username": "hp-consumer", "sasl.password": password,
        "ssl.key.pem": key, "ssl.key.password": "k3y-pass"}})
    shown = repr(cfg) + repr(cfg.kafka) + str(cfg.model_dump()) + cfg.model_dump_json()
    for secret in (password, key, "k3y-pass"):
        assert secret not in shown
        assert secret in cfg.secrets()
    assert cfg.kafka.as_librdkafka_dict()["sasl.password"] == password
    assert cfg.model_dump()["kafka"]["client_config"]["sasl.username"] == "hp-consumer"  # not a secret: shown


def test_not_yaml_and_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "a: [1,\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- 1\n"))
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")


def test_duplicate_query_names(tmp_path):
    text = "extract:\n  queries:\n    - {name: a, promql: up}\n    - {name: a, promql: up}\n"
    with pytest.raises(ConfigError, match="repeated: a"):
        load_config(write(tmp_path, text))


def test_cli_exits_2_on_bad_config(tmp_path, capsys):
    from healthpipe.cli import main

    assert main(["producer", "--config", str(write(tmp_path, "nope: 1\n"))]) == 2
    assert "nope: unknown key" in capsys.readouterr().err


@pytest.mark.parametrize("text,path", [
    ("transform:\n  valid_metrics: up\n", r"transform\.valid_metrics"),
    ("transform:\n  max_future_skew_seconds: -1\n", r"transform\.max_future_skew_seconds"),
    ("transform:\n  colour: red\n", r"transform\.colour: unknown key"),
    ("pipeline:\n  interval_seconds: 0\n", r"pipeline\.interval_seconds"),
    ("pipeline:\n  log_level: LOUD\n", r"pipeline\.log_level"),
    ("producer:\n  max_samples_per_message: 0\n", r"producer\.max_samples_per_message"),
    ("producer:\n  metrics_port: 70000\n", r"producer\.metrics_port"),
    ("consumer:\n  writers: 0\n", r"consumer\.writers"),
    ("consumer:\n  session_timeout_ms: 10\n", r"consumer\.session_timeout_ms"),
    ("consumer:\n  batch_max_age_seconds: fast\n", r"consumer\.batch_max_age_seconds"),
    ("kafka:\n  retention: forever\n", r"kafka\.retention: .*not a duration"),
    ("extract:\n  max_backfill: 6 hours\n", r"extract\.max_backfill: .*not a duration"),
    ("extract:\n  raw_chunk: -5\n", r"extract\.raw_chunk"),
    ("extract:\n  queries:\n    - {name: q, promql: up, step: 0s}\n", r"extract\.queries\.0\.step"),
])
def test_bad_values_in_every_section_name_the_key(tmp_path, text, path):
    with pytest.raises(ConfigError, match=path):
        load_config(write(tmp_path, text))


def test_an_unreadable_token_file_names_it(tmp_path):
    with pytest.raises(ConfigError, match=r"load\.influxdb: .*cannot read token_file .*missing-token"):
        load_config(write(tmp_path, f"load:\n  influxdb:\n    token_file: {tmp_path / 'missing-token'}\n"))


def test_durations_are_parsed_once_and_round_trip(tmp_path):
    cfg = load_config(write(tmp_path, "kafka:\n  retention: 2d\nextract:\n  max_backfill: 1h30m\n"))
    assert cfg.kafka.retention_ms == 2 * 86_400_000 and cfg.extract.max_backfill.ms == 5_400_000
    assert cfg.model_dump(mode="json")["extract"]["max_backfill"] == "1h30m"


def test_the_environment_can_be_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("HEALTHPIPE_KAFKA__PARTITIONS", "12")
    assert load_config(write(tmp_path, ""), environment=False).kafka.partitions == 6
