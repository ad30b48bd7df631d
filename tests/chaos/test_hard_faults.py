"""Harder faults: crashes of the services themselves, a hung network, a full disk, and the failure paths that
only show under them (revoke while the sink is down, the dead-letter topic gone, a token revoked at run
time). Same rules as test_scenarios.py: prove the fault hit work in flight, then check the ledger whole."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
from confluent_kafka.admin import AdminClient

from healthpipe.ops import stack
from tests.chaos.test_scenarios import assert_done, drain_exactly, in_flight_now, setup
from tests.support import kafka
from tests.support.faults import FaultProxy
from tests.support.pipeline import (
    ConsumerProcess,
    ConsumerThread,
    committed_all,
    free_port,
    holds_uncommitted_work,
    wait_until,
)


@pytest.fixture
def slow_influx(native):
    proxy = FaultProxy(native.influx_url)
    proxy.fail_path_prefix = "/api/v2/write"
    yield proxy
    proxy.close()


def test_15_influxdb_killed_9_with_a_write_outstanding(native, slow_influx):
    """kill -9 InfluxDB while a write is inside it: what it acknowledged survives (its WAL is fsynced before
    the 204), what it did not is retried; the ledger is exact. The proof that the kill hit a write: the proxy
    had a request open at InfluxDB and saw that request's connection break (upstream_errors). A kill in an
    idle moment breaks nothing and the test fails there."""
    # The proxy trickles each write's body to InfluxDB over 1 s, so a write is open *inside InfluxDB* (not only
    # held at the proxy) most of the time; the kill waits for one and the proxy then sees it broken.
    slow_influx.trickle = 1.0
    cfg, ledger = setup(native, 15, 60, 1000, influxdb={"batch_size": 1000, "url": slow_influx.url})
    replica = ConsumerThread(cfg)
    influxdb = stack.service("influxdb")
    try:
        wait_until(lambda: slow_influx.upstream_open >= 1 and replica.metric(
            "healthpipe_consumer_samples_written_total") > 0, 60, interval=0.02, what="a write open at InfluxDB")
        in_flight_now(replica, cfg)
        broken_before = slow_influx.upstream_errors
        stack.kill(influxdb)
        wait_until(lambda: slow_influx.upstream_errors > broken_before, 10, interval=0.05,
                   what="the kill to break the write InfluxDB was receiving")
        time.sleep(10)
        assert replica.metric("healthpipe_consumer_paused") == 1
    finally:
        stack.start(influxdb)
    slow_influx.trickle = 0.0
    drain_exactly(replica, cfg, ledger, "drain after InfluxDB is back")


def test_16_network_partition_hangs_writes_without_closing_the_socket(native, slow_influx):
    """A hung connection, not a refused one: InfluxDB's requests never answer. The client's timeout turns it
    into a retryable failure; the consumer holds, commits nothing, stays in its group, and drains on heal."""
    slow_influx.delay = 0.3
    cfg, ledger = setup(native, 16, 40, 1000, influxdb={"batch_size": 1000, "url": slow_influx.url,
                                                        "timeout_seconds": 3})
    replica = ConsumerThread(cfg)
    wait_until(lambda: replica.metric("healthpipe_consumer_samples_written_total") > 0, 60, what="first writes")
    slow_influx.hang()
    in_flight_now(replica, cfg)
    wait_until(lambda: slow_influx.hung >= 2, 60, what="writes hanging")
    before = kafka.committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic)
    time.sleep(15)
    assert kafka.committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic) == before
    assert replica.metric("healthpipe_consumer_paused") == 1
    assert replica.metric("healthpipe_consumer_rebalances_total", {"kind": "revoke"}) == 0
    slow_influx.heal()
    slow_influx.delay = 0.0
    drain_exactly(replica, cfg, ledger, "drain after the partition heals")


class PrivateInflux:
    """An influxd of the test's own whose engine lives on a tmpfs of `size`: its disk can fill up."""

    def __init__(self, root: Path, size: str):
        self.root, self.port = root, free_port()
        self.engine = root / "engine"
        self.engine.mkdir(parents=True)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(self.engine)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs for InfluxDB's engine here ({result.stderr.strip()}): needs root")
        self.token = secrets.token_urlsafe(16)
        self.proc: subprocess.Popen | None = None
        self.start()
        requests.post(f"{self.url}/api/v2/setup", timeout=10, json={
            "username": "u", "password": secrets.token_urlsafe(12), "org": "healthpipe", "bucket": "health_metrics",
            "token": self.token}).raise_for_status()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        influxd = stack.CACHE / f"influxdb-{stack.INFLUXDB_VERSION}" / "influxd"
        self.proc = subprocess.Popen(
            [str(influxd), "--bolt-path", str(self.root / "b.bolt"), "--engine-path", str(self.engine),
             "--sqlite-path", str(self.root / "s.sqlite"), "--http-bind-address", f"127.0.0.1:{self.port}",
             "--ui-disabled", "--reporting-disabled", "--log-level", "warn"],
            stdout=open(self.root / "influxd.log", "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115

        def up() -> bool:
            try:
                return requests.get(f"{self.url}/health", timeout=1).ok
            except requests.RequestException:
                return False

        wait_until(up, 30, interval=0.2, what="private influxd up")

    def restart(self) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(30)
        self.start()

    def grow(self, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.engine)], check=True)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        subprocess.run(["umount", str(self.engine)], capture_output=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_17_influxdb_disk_full_holds_until_space_and_a_restart(native, tmp_path):
    """InfluxDB's engine on a 4 MB tmpfs fills up: writes answer 500 "no space left on device", the consumer
    holds and commits nothing. Found here: influxd 2.7 does not reopen a shard that failed for lack of space
    even after space returns ("not attempting to open shard ...; opening shard previously failed"), so the
    consumer keeps holding until InfluxDB is restarted; then it drains, exact."""
    if not shutil.which("mount"):
        pytest.skip("no mount command")
    influx = PrivateInflux(tmp_path / "influx", "1m")  # 200k ledger samples need ~2.3 MB of WAL
    try:
        cfg, ledger = setup(native, 17, 100, 2000, influxdb={"url": influx.url, "token": influx.token,
                                                             "batch_size": 5000})
        replica = ConsumerThread(cfg)
        wait_until(lambda: replica.metric("healthpipe_consumer_influx_write_failures_total") >= 2, 120,
                   what="writes failing on the full disk")
        in_flight_now(replica, cfg)
        assert replica.metric("healthpipe_consumer_paused") == 1
        before = kafka.committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic)
        influx.grow("256m")
        time.sleep(10)
        # space is back, but the shard that failed to open stays failed: still holding, still nothing committed
        assert kafka.committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic) == before
        assert "opening shard previously failed" in (tmp_path / "influx" / "influxd.log").read_text() or \
            replica.metric("healthpipe_consumer_paused") == 1
        influx.restart()
        drain_exactly(replica, cfg, ledger, "drain after space and a restart")
    finally:
        influx.close()


def test_18_revoke_while_influxdb_is_down_abandons_and_the_survivor_drains(native, slow_influx):
    """Replica A holds (InfluxDB answers 503); B joins, so A's partitions are revoked while its batches cannot
    be written. A abandons them within revoke_deadline (nothing committed) and rewinds what it keeps; it must
    not stay paused. When InfluxDB is back the group drains exactly."""
    cfg, ledger = setup(native, 18, 60, 1000, influxdb={"url": slow_influx.url},
                        consumer={"revoke_deadline_seconds": 2})
    slow_influx.fail_status = 503
    a = ConsumerThread(cfg)
    wait_until(lambda: a.metric("healthpipe_consumer_paused") == 1, 60, what="A held")
    in_flight_now(a, cfg)
    b = ConsumerThread(cfg)
    wait_until(lambda: a.metric("healthpipe_consumer_rebalances_total", {"kind": "revoke"}) >= 1
               and b.service.assigned, 60, what="A's partitions revoked and B assigned")
    assert not any(o > 0 for o in kafka.committed_offsets(cfg, cfg.kafka.group_id, cfg.kafka.topic).values())
    slow_influx.fail_status = None
    wait_until(lambda: committed_all(cfg), 300, what="the group to drain")
    assert a.metric("healthpipe_consumer_paused") == 0 and b.metric("healthpipe_consumer_paused") == 0
    a.stop()
    b.stop()
    assert_done(cfg, ledger)


def test_19_dead_letter_topic_gone_holds_the_commit_until_it_is_back(native):
    """The dead-letter topic is deleted under a running consumer; garbage arrives. Its dead letters cannot be
    delivered, so the batch is held and its offsets are not committed; once the topic exists again they are
    delivered (at least once) and everything commits."""
    cfg, ledger = setup(native, 19, 10, 100, consumer={"dead_letter_timeout_seconds": 3})
    replica = ConsumerThread(cfg)
    wait_until(lambda: committed_all(cfg), 60, what="the clean data loaded")
    admin = AdminClient({"bootstrap.servers": cfg.kafka.bootstrap_servers})
    admin.delete_topics([cfg.kafka.dead_letter_topic])[cfg.kafka.dead_letter_topic].result(30)
    wait_until(lambda: cfg.kafka.dead_letter_topic not in admin.list_topics(timeout=10).topics, 30,
               what="the DLQ deleted")
    kafka.produce(cfg, cfg.kafka.topic, [(b"bad", b"\x00 garbage", None)])
    wait_until(lambda: replica.metric("healthpipe_consumer_paused") == 1, 60, what="held on the dead letter")
    in_flight_now(replica, cfg)
    time.sleep(4)
    assert not committed_all(cfg)
    from healthpipe.common.kafka import ensure_topics

    ensure_topics(cfg)  # the topic is back
    wait_until(lambda: committed_all(cfg), 120, what="the dead letter delivered and committed")
    replica.stop()
    ledger.assert_exact(cfg)
    letters = kafka.read_topic(cfg, cfg.kafka.dead_letter_topic)
    assert letters and {m.key() for m in letters} == {b"bad"}  # at least once, and nothing else


def test_20_token_revoked_at_run_time_stops_the_consumer_naming_the_cause(native, slow_influx, tmp_path):
    """The consumer's own InfluxDB token is deleted while it holds uncommitted work: the next write answers
    401, which is Fatal: it exits 1 naming the token, commits nothing it did not write; a restart with a
    valid token finishes the job exactly."""
    from influxdb_client import InfluxDBClient
    from influxdb_client.domain.permission import Permission
    from influxdb_client.domain.permission_resource import PermissionResource

    s = native.config().load.influxdb
    with InfluxDBClient(url=s.url, token=s.token.get_secret_value(), org=s.org) as c:
        org = c.organizations_api().find_organizations(org=s.org)[0]
        bucket = c.buckets_api().find_bucket_by_name(s.bucket)
        perms = [Permission(action=a, resource=PermissionResource(type="buckets", id=bucket.id, org_id=org.id))
                 for a in ("read", "write")]
        auth = c.authorizations_api().create_authorization(org_id=org.id, permissions=perms)
    slow_influx.delay = 0.5
    cfg, ledger = setup(native, 20, 50, 1000, influxdb={"batch_size": 1000, "url": slow_influx.url,
                                                        "token": auth.token})
    log = tmp_path / "consumer.log"
    replica = ConsumerProcess(cfg, tmp_path, log)
    replica.wait_for("writes going", lambda m: m.get("healthpipe_consumer_samples_written_total", 0) > 0
                     and holds_uncommitted_work(m))
    with InfluxDBClient(url=s.url, token=s.token.get_secret_value(), org=s.org) as c:
        c.authorizations_api().delete_authorization(auth)
    assert replica.proc.wait(timeout=60) == 1
    text = log.read_text()
    assert "token" in text and auth.token not in text
    assert not committed_all(cfg)
    good = cfg.model_copy(update={"load": cfg.load.model_copy(update={"influxdb": cfg.load.influxdb.model_copy(
        update={"token": s.token})})})
    slow_influx.delay = 0.0
    again = ConsumerThread(good)
    wait_until(lambda: committed_all(good), 120, what="a restart with a valid token drains")
    again.stop()
    assert_done(good, ledger)
