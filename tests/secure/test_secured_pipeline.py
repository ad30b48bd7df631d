"""The pipeline on the secured stack: exact with SASL_SSL and https, each process as its least-privileged principal;
refused credentials and untrusted certificates stop a process at once, saying which; a right missing at run time
holds the work, loses nothing, and drains once granted."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from healthpipe.common.principals import KafkaGrant
from healthpipe.ml.serve import FeatureServer
from healthpipe.ops.stack import security
from healthpipe.ops.stack.certs import untrusted_ca
from healthpipe.producer.service import ProducerService
from healthpipe.verify import verification
from tests.integration.test_producer import RAW_UP, wait_for_scrapes
from tests.secure.conftest import admin
from tests.support import influx, kafka
from tests.support.pipeline import (
    ConsumerProcess,
    ConsumerThread,
    committed_all,
    holds_uncommitted_work,
    process_env,
    series_messages,
    wait_until,
    write_config,
)
from tests.support.roles import as_role

RATE = {"name": "request_rate", "promql": "sum by (method, path) (rate(http_requests_total[1m]))", "mode": "range",
        "step": "5s", "metric_type": "throughput"}


def test_the_pipeline_is_exact_with_each_process_as_its_own_principal(secured, secure_stack):
    """producer as hp-producer, consumer as hp-consumer, verify as hp-reader: all over SASL_SSL and https."""
    wait_for_scrapes(secure_stack, seconds=30)
    operator = secured(extract={"queries": [RAW_UP, RATE], "max_backfill": "2m", "lag_seconds": 5},
                       consumer={"batch_max_age_seconds": 0.5})
    producer = ProducerService(as_role(operator, "producer"))
    producer.initialize()
    published = producer.run_single_cycle()
    producer.close()
    assert sum(published.values()) > 0
    ConsumerThread(as_role(operator, "consumer"), until_idle=3).join()
    assert committed_all(operator)
    end = min(producer.watermarks.values())
    reader = as_role(operator, "reader")
    report = verification.run(reader, reader.extract.queries, end - 90_000, end)
    assert report.exact, report.as_json()
    assert {q.name: q.expected > 0 for q in report.queries} == {"availability": True, "request_rate": True}
    # the feature server as hp-reader: its stream store reads the topic and the group's offsets under the ACLs
    server = FeatureServer(reader, 0).start()
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{server.port}/readyz", timeout=5).status_code == 200,
                   60, what="the feature server's stream store caught up, as hp-reader")
        answer = requests.get(f"http://127.0.0.1:{server.port}/features", timeout=30,
                              params={"query": "availability", "window": "1m", "at": end / 1000}).json()
        assert answer["freshness"]["source"] == "stream" and answer["series"], answer
    finally:
        server.stop()


def _error(done: subprocess.CompletedProcess) -> str:
    """The line a command ends with when it fails: `healthpipe: <cause and remedy>`."""
    return next((line for line in reversed(done.stderr.splitlines()) if line.startswith("healthpipe: ")), "")


def _run(kind: str, cfg, tmp_path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    config = write_config(cfg, tmp_path / f"{kind}.yaml")
    return subprocess.run([sys.executable, "-m", "healthpipe", kind, "--config", str(config), *args],
                          env=process_env(cfg), capture_output=True, text=True, timeout=timeout)


def test_a_wrong_password_stops_the_process_naming_principal_and_listener(secured, tmp_path):
    cfg = as_role(secured(), "consumer")
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password")
    cfg.kafka.security = cfg.kafka.security.model_copy(update={"password_file": wrong})
    t0 = time.monotonic()
    done = _run("consumer", cfg, tmp_path)
    took = time.monotonic() - t0
    assert done.returncode == 2, done.stderr[-2000:]
    last = _error(done)
    assert "refused User:hp-consumer on its SASL_SSL listener" in last and "127.0.0.1:9092" in last, last
    assert "not-the-password" not in done.stdout + done.stderr
    # no retry storm: it stops within seconds, after a few attempts per broker, instead of reconnecting for ever.
    # An attempt is one librdkafka FAIL line. The first poll that can raise comes after a 1 s metadata slice, and
    # librdkafka's reconnect backoff (100 ms doubling, ±20 % jitter) fits at most 4 attempts per broker in it: a
    # slow machine makes 3 (CI did), this one 2.
    assert took < 20, took
    brokers = len(cfg.kafka.bootstrap_servers.split(","))
    attempts = [line for line in done.stderr.splitlines()
                if "logger=librdkafka" in line and "Authentication failed" in line]
    assert 1 <= len(attempts) <= 4 * brokers, attempts


def test_an_untrusted_certificate_is_refused_with_the_setting_to_fix(secured, tmp_path):
    stranger = untrusted_ca(security.secure_dir() / "tls")
    cfg = as_role(secured(), "consumer")
    kafka_wrong = cfg.model_copy(deep=True)
    kafka_wrong.kafka.security = kafka_wrong.kafka.security.model_copy(update={"ca_file": stranger})
    done = _run("consumer", kafka_wrong, tmp_path)
    assert done.returncode == 2 and "kafka.security.ca_file" in _error(done), done.stderr[-2000:]
    influx_wrong = cfg.model_copy(deep=True)
    influx_wrong.load.influxdb = influx_wrong.load.influxdb.model_copy(update={"ca_file": stranger})
    done = _run("consumer", influx_wrong, tmp_path)
    last = _error(done)
    assert done.returncode == 1 and "TLS with InfluxDB" in last and "load.influxdb.ca_file" in last, last


def test_check_names_each_missing_right_of_a_role(secured, tmp_path):
    cfg = secured()
    consumer = as_role(cfg, "consumer")
    assert _run("check", consumer, tmp_path, "--role", "consumer").returncode == 0
    security.revoke_acl(admin(cfg), "consumer", KafkaGrant("GROUP", cfg.kafka.group_id, "READ"))
    wrong_token = consumer.model_copy(deep=True)
    wrong_token.load.influxdb = wrong_token.load.influxdb.model_copy(
        update={"token_file": security.influx_token_file("reader"),
                "token": as_role(cfg, "reader").load.influxdb.token})
    done = _run("check", wrong_token, tmp_path, "--role", "consumer")
    assert done.returncode == 1
    assert f"consumer principal User:hp-consumer lacks READ on group {cfg.kafka.group_id}" in done.stdout, done.stdout
    assert f"InfluxDB token cannot write bucket {cfg.load.influxdb.bucket}" in done.stdout, done.stdout


@pytest.mark.parametrize("revoked", ["dlq-write", "topic-read"])
def test_a_right_missing_at_run_time_holds_the_work_then_drains_once_granted(secured, tmp_path, revoked):
    """The consumer's WRITE on the dead-letter topic (met with a poison message), or its READ on the data topic,
    revoked while it holds uncommitted work: it holds, commits nothing past it, says why; granted back, it drains
    and every point and dead letter is there."""
    cfg = secured(consumer={"batch_max_age_seconds": 0.5}, kafka={"partitions": 1})
    run = uuid.uuid4().hex
    right = (KafkaGrant("TOPIC", cfg.kafka.dead_letter_topic, "WRITE") if revoked == "dlq-write"
             else KafkaGrant("TOPIC", cfg.kafka.topic, "READ"))
    first, expected = series_messages(run, n_series=4, n_samples=50, start_ms=int(time.time() * 1000) - 3_600_000)
    kafka.produce(cfg, cfg.kafka.topic, first)
    consumer = ConsumerProcess(as_role(cfg, "consumer"), tmp_path, tmp_path / "consumer.log")
    try:
        consumer.wait_for("the first messages committed", lambda m: committed_all(cfg))
        security.revoke_acl(admin(cfg), "consumer", right)
        time.sleep(2)  # ACLs propagate through the metadata log
        poison = [(b"poison", b"{not json", None)]
        more, expected_more = series_messages(run, n_series=4, n_samples=50,
                                              start_ms=int(time.time() * 1000) - 1_800_000)
        kafka.produce(cfg, cfg.kafka.topic, poison + more)
        if revoked == "dlq-write":
            # the fault hits work in flight: the batch with the poison message is held, its offsets uncommitted
            def held() -> bool:
                assert consumer.proc.poll() is None, "the consumer exited instead of holding"
                ready = requests.get(f"http://127.0.0.1:{consumer.port}/readyz", timeout=5)
                attempts = re.search(r"after (\d+) failed attempts", ready.text)
                return ready.status_code == 503 and "TOPIC_AUTHORIZATION_FAILED" in ready.text and \
                    attempts is not None and int(attempts[1]) >= 5

            # /readyz says why, while the batch with the poison message is held with its offsets uncommitted, and
            # keeps holding through several attempts (librdkafka refuses the later ones before they leave)
            wait_until(held, 60, interval=0.1, what="/readyz naming the refused dead-letter write, 5 attempts")
            assert holds_uncommitted_work(consumer.metrics())
        else:
            time.sleep(8)
        assert not committed_all(cfg)
        security.grant_acls(admin(cfg), cfg, roles=("consumer",))
        wait_until(lambda: committed_all(cfg), 120, what="the consumer drained after the grant")
    finally:
        consumer.terminate()
    letters = kafka.read_topic(cfg, cfg.kafka.dead_letter_topic)
    assert [m.key() for m in letters] == [b"poison"]
    assert influx.run_points(cfg.load.influxdb, run) == expected | expected_more


def test_no_secret_reaches_a_log_line_argv_or_metrics_in_a_secured_run(secured, secure_stack, tmp_path):
    """Producer, consumer, verify and check, each as its role, at DEBUG: every line they write, their argv and the
    consumer's /metrics are searched for every secret of the stack (passwords, tokens)."""
    wait_for_scrapes(secure_stack, seconds=20)
    operator = secured(extract={"queries": [RAW_UP], "max_backfill": "2m", "lag_seconds": 5},
                       consumer={"batch_max_age_seconds": 0.5}, pipeline={"log_level": "DEBUG"})
    secrets = [security.password(u) for u in [security.ADMIN, *security.USERNAMES.values()]]
    secrets += [security.influx_token_file(r).read_text().strip() for r in ("consumer", "reader", "tiers")]
    secrets += [operator.load.influxdb.token.get_secret_value()]
    assert all(len(s) >= 16 for s in secrets)
    out = []
    producer = _run("producer", as_role(operator, "producer"), tmp_path, "--once", timeout=120)
    out.append(producer.stdout + producer.stderr)
    assert producer.returncode == 0, producer.stderr[-2000:]
    consumer = ConsumerProcess(as_role(operator, "consumer"), tmp_path, tmp_path / "consumer.log")
    try:
        wait_until(lambda: committed_all(operator), 120, what="the consumer committed everything")
        out.append(requests.get(f"http://127.0.0.1:{consumer.port}/metrics", timeout=5).text)
        out.append(requests.get(f"http://127.0.0.1:{consumer.port}/readyz", timeout=5).text)
        out.append(Path(f"/proc/{consumer.proc.pid}/cmdline").read_text())
    finally:
        consumer.terminate()
    out.append((tmp_path / "consumer.log").read_text())
    now = int(time.time())
    for kind, args in [("verify", ["--from", str(now - 600), "--to", str(now - 60)]), ("check", ["--role", "reader"])]:
        done = _run(kind, as_role(operator, "reader"), tmp_path, *args, timeout=300)
        out.append(done.stdout + done.stderr)
    text = "\n".join(out)
    assert "level=DEBUG" in text and "batch_flushed" in text  # the search covers a real, verbose run
    leaked = [s[:4] + "..." for s in secrets if s in text]
    assert not leaked, f"secrets found in logs/argv/metrics: {leaked}"
