"""Running healthpipe's processes inside tests: consumers in threads or subprocesses, seeded data."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import requests
import yaml
from confluent_kafka import KafkaException
from prometheus_client.parser import text_string_to_metric_families

from healthpipe.common.config import HealthpipeConfig
from healthpipe.common.messages import SeriesWindow, headers
from healthpipe.consumer.service import ConsumerService
from healthpipe.sinks.influx.service import influx_consumer
from tests.support import kafka


class ConsumerThread:
    """A ConsumerService running in a thread, as one replica of the group (`service=` runs a prebuilt one,
    e.g. the archiver)."""

    def __init__(self, cfg: HealthpipeConfig, until_idle: float | None = None, service: ConsumerService | None = None,
                 **kwargs):
        self.service = service or influx_consumer(cfg, **kwargs)
        self.service.initialize()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(until_idle,), daemon=True)
        self.thread.start()

    def _run(self, until_idle: float | None) -> None:
        try:
            self.service.run_continuous(until_idle)
        except BaseException as exc:  # surfaced by join()
            self.error = exc
        finally:
            self.service.close()

    def stop(self, timeout: float = 60) -> None:
        self.service.stop()
        self.join(timeout)

    def join(self, timeout: float = 120) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "consumer did not stop"
        if self.error:
            raise self.error

    def metric(self, name: str, labels: dict | None = None) -> float:
        """One sample's value; without `labels`, the sum over all of the name's label sets (as `scrape` does)."""
        if labels is not None:
            return self.service.metrics.registry.get_sample_value(name, labels) or 0.0
        return sum(s.value for family in self.service.metrics.registry.collect() for s in family.samples
                   if s.name == name)


def write_config(cfg: HealthpipeConfig, path: Path) -> Path:
    """The config as YAML, without the token (passed through the environment, as in production)."""
    data = orjson.loads(cfg.model_dump_json(exclude={"load": {"influxdb": {"token"}},
                                                     "archive": {"s3": {"access_key", "secret_key"}}}))
    path.write_text(yaml.safe_dump(data))
    return path


def process_env(cfg: HealthpipeConfig) -> dict[str, str]:
    """The environment of a process a test starts: the caller's, minus every HEALTHPIPE_* variable (they would
    override the test's config file), plus the secrets (never written to the file)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHPIPE_")}
    return {**clean, "HEALTHPIPE_LOAD__INFLUXDB__TOKEN": cfg.load.influxdb.token.get_secret_value(),
            "HEALTHPIPE_ARCHIVE__S3__ACCESS_KEY": cfg.archive.s3.access_key.get_secret_value(),
            "HEALTHPIPE_ARCHIVE__S3__SECRET_KEY": cfg.archive.s3.secret_key.get_secret_value()}


def start_process(kind: str, config_file: Path, cfg: HealthpipeConfig, *args: str, log: Path | None = None,
                  env: dict[str, str] | None = None, code: Path | None = None):
    """env: more variables for the process (a test's pause hook, say); code: another checkout to run it from (a
    benchmark's before). `python -m` puts the working directory first on sys.path, ahead of PYTHONPATH: the
    process starts in that checkout, or it would run this one's healthpipe whatever PYTHONPATH says."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 (owned by the process)
    more = {**(env or {}), **({"PYTHONPATH": str(code)} if code is not None else {})}
    return subprocess.Popen([sys.executable, "-m", "healthpipe", kind, "--config", str(config_file.resolve()), *args],
                            env={**process_env(cfg), **more}, stdout=out, stderr=subprocess.STDOUT, cwd=code)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[str, float]:
    """A process's /metrics, summed over labels per sample name, and each labelled sample under its name with
    its labels ({} while it does not answer)."""
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except requests.RequestException:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
            if sample.labels:  # and each labelled sample as written: 'name{outcome="committed"}'
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


class ConsumerProcess:
    """`python -m healthpipe consumer` (or `archive`) as a subprocess with its own /metrics port: for kill -9 and
    SIGTERM."""

    def __init__(self, cfg: HealthpipeConfig, workdir: Path, log: Path, *args: str, kind: str = "consumer",
                 env: dict[str, str] | None = None):
        self.port = free_port()
        section = "archive" if kind == "archive" else "consumer"
        mine = cfg.model_copy(update={section: getattr(cfg, section).model_copy(update={"metrics_port": self.port})})
        config_file = write_config(mine, workdir / f"{kind}-{self.port}.yaml")
        self.proc = start_process(kind, config_file, cfg, *args, log=log, env=env)

    def metrics(self) -> dict[str, float]:
        return scrape(self.port)

    def wait_for(self, what: str, predicate, timeout: float = 60) -> dict[str, float]:
        """Wait until predicate(metrics) holds; returns the metrics that satisfied it."""
        seen: dict[str, float] = {}

        def check() -> bool:
            nonlocal seen
            seen = self.metrics()
            if self.proc.poll() is not None:
                raise AssertionError(f"consumer exited ({self.proc.returncode}) while waiting for {what}")
            return bool(seen) and predicate(seen)

        wait_until(check, timeout, interval=0.05, what=what)
        return seen

    def kill_9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


def holds_uncommitted_work(m: dict[str, float]) -> bool:
    return m.get("healthpipe_consumer_uncommitted_messages", 0) > 0


def wait_for_log(log: Path, text: str, since: int, timeout: float = 60) -> None:
    """Wait until `text` appears in `log` after byte `since` (a process started after that point wrote it)."""
    def seen() -> bool:
        with open(log, "rb") as f:
            f.seek(since)
            return text.encode() in f.read()
    wait_until(seen, timeout, interval=0.2, what=f"{text!r} in {log.name}")


# Each restart after a kill -9 waits for the killed member's session to expire before it gets the partitions:
# Kafka's shortest (group.min.session.timeout.ms) instead of the default 10 s saves ~40 s a ten-kill test.
REJOIN_SOON = {"session_timeout_ms": 6000}


def kill_9_with_work_in_flight(cfg: HealthpipeConfig, workdir: Path, log: Path, delays) -> list[dict[str, float]]:
    """Start a consumer process and SIGKILL it after each delay in turn (crashes at arbitrary moments), each
    time proving the crash hit work in flight: its /metrics, read just before the kill, show uncommitted
    messages, and Kafka shows offsets left to commit. The caller sizes the data (or slows the sink) so there
    is work left at every kill. Returns the metrics read at each kill."""
    evidence = []
    for delay in delays:
        replica = ConsumerProcess(cfg, workdir, log)
        replica.wait_for("uncommitted work", holds_uncommitted_work)
        time.sleep(delay)
        at_kill = replica.metrics()
        replica.kill_9()
        assert holds_uncommitted_work(at_kill), f"kill after {delay:.1f}s hit no uncommitted work: {at_kill}"
        assert not committed_all(cfg), "everything was committed before the kill: the crash proves nothing"
        evidence.append(at_kill)
    return evidence


def consume_to_the_end(config_file: Path, cfg: HealthpipeConfig, log: Path, timeout: float = 300) -> None:
    """Run a consumer process until every offset is committed, then SIGTERM it; it must exit 0.

    Not --until-idle: a killed member keeps its partitions until its session times out, so a short idle
    timer could end the run before they reach this one."""
    since = log.stat().st_size if log.exists() else 0
    proc = start_process("consumer", config_file, cfg, log=log)
    wait_for_log(log, "partitions_assigned", since)  # running, with its SIGTERM handler in place
    wait_until(lambda: committed_all(cfg), timeout, what="every offset committed")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def series_messages(run: str, n_series: int, n_samples: int, start_ms: int, step_ms: int = 1000,
                    metric: str = "up") -> tuple[list, set]:
    """Kafka messages (key, value, headers) for n_series × n_samples, and the expected (series, ts, value)."""
    messages, expected = [], set()
    for s in range(n_series):
        labels = {"__name__": metric, "job": "test-app", "instance": f"host-{s}:8000", "run": run}
        samples = [(start_ms + i * step_ms, str(float(s * 1000 + i))) for i in range(n_samples)]
        window = SeriesWindow("availability", "availability", labels, start_ms - 1,
                              start_ms + n_samples * step_ms, samples)
        for part in window.split(100, 256 * 1024):
            messages.append((part.key, part.to_json(), headers()))
        expected |= {(f"host-{s}:8000", ts, float(v)) for ts, v in samples}
    return messages, expected


def wait_until(predicate, timeout: float = 60, interval: float = 0.5, what: str = "condition") -> None:
    """Poll `predicate` until true. A Kafka error while asking counts as "not yet": right after a broker
    restart, offset lookups answer NOT_COORDINATOR until the group coordinator has loaded."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except KafkaException as exc:
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                         + (f" (last Kafka error: {last_error})" if last_error else ""))


def committed_all(cfg: HealthpipeConfig, group: str | None = None) -> bool:
    """The group has committed everything readable on every partition (empty ones: nothing committed).

    Usually that is the end offset; a log that ends in transaction markers (the producer's data) is done one
    marker earlier, at the offset after its last readable record."""
    committed = kafka.committed_offsets(cfg, group or cfg.kafka.group_id, cfg.kafka.topic)
    ends = kafka.end_offsets(cfg, cfg.kafka.topic)
    behind = [p for p, end in ends.items() if not (committed[p] == end or (end == 0 and committed[p] < 0))]
    if not behind:
        return True
    from healthpipe.common.kafka import consumable_end, reader

    consumer = reader(cfg)
    try:
        readable = consumable_end(consumer, cfg.kafka.topic, behind)
    finally:
        consumer.close()
    return all(committed[p] >= readable[p] or (readable[p] == 0 and committed[p] < 0) for p in behind)
