"""The native stack: real Kafka, Prometheus, InfluxDB and the demo app as local processes.

This machine has no Docker engine, so `healthpipe stack up` installs (once, cached under
~/.cache/healthpipe keyed by version) and starts each service from `scripts/stack/`, keeping its data,
pid and log under `.stack/`. `down` stops exactly the processes whose pids it recorded.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from common.errors import StackError

KAFKA_VERSION = "3.9.1"
INFLUXDB_VERSION = "2.7.12"
ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts" / "stack"
CACHE = Path(os.environ.get("HEALTHPIPE_CACHE", Path.home() / ".cache" / "healthpipe"))
STACK_DIR = Path(os.environ.get("HEALTHPIPE_STACK_DIR", ROOT / ".stack"))

KAFKA_PORT, KAFKA_CONTROLLER_PORT, PROMETHEUS_PORT, INFLUXDB_PORT, DEMO_APP_PORT = 9092, 9093, 9090, 8086, 8000
INFLUX_ORG, INFLUX_BUCKET, INFLUX_USER = "healthpipe", "health_metrics", "healthpipe"
PRODUCER_METRICS_PORT, CONSUMER_METRICS_PORTS = 8001, (8002, 8003, 8004, 8005)


@dataclass
class Service:
    name: str
    command: Callable[[], list[str]]
    ready: Callable[[], bool]
    prepare: Callable[[], None] = lambda: None
    after_ready: Callable[[], None] = lambda: None
    start_timeout: float = 90.0
    env: Callable[[], dict[str, str]] = lambda: {}

    @property
    def pid_file(self) -> Path:
        return STACK_DIR / "pids" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return STACK_DIR / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited child not yet reaped) is not alive for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


# --- Kafka --------------------------------------------------------------------------------------------

def _kafka_dir() -> Path:
    return STACK_DIR / "kafka"


def _kafka_prepare() -> None:
    _run_script("install-kafka.sh", KAFKA_VERSION=KAFKA_VERSION)
    d = _kafka_dir()
    (d / "data").mkdir(parents=True, exist_ok=True)
    (d / "server.properties").write_text(f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{KAFKA_CONTROLLER_PORT}
listeners=PLAINTEXT://127.0.0.1:{KAFKA_PORT},CONTROLLER://127.0.0.1:{KAFKA_CONTROLLER_PORT}
advertised.listeners=PLAINTEXT://127.0.0.1:{KAFKA_PORT}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={d / "data"}
num.partitions=6
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
group.initial.rebalance.delay.ms=0
log.flush.interval.messages=9223372036854775807
""")
    (d / "log4j.properties").write_text("""\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
""")
    if not (d / "data" / "meta.properties").exists():
        subprocess.run(_java("kafka.tools.StorageTool", "format", "-t", "healthpipe-native-stack1",
                             "-c", str(d / "server.properties"), "--ignore-formatted"),
                       check=True, stdout=subprocess.DEVNULL)


def _java(main: str, *args: str) -> list[str]:
    lib = CACHE / f"kafka-{KAFKA_VERSION}" / "lib" / "*"
    return ["java", "-Xms256m", "-Xmx768m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{_kafka_dir() / 'log4j.properties'}",
            "-cp", str(lib), main, *args]


def _kafka_ready() -> bool:
    from confluent_kafka.admin import AdminClient

    try:
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{KAFKA_PORT}", "log_level": 0,
                             "logger": _quiet_logger()})
        admin.list_topics(timeout=2)
        return True
    except Exception:
        return False


def _quiet_logger():  # librdkafka logs connection refusals while the broker starts; not interesting here
    import logging

    log = logging.getLogger("stack.kafka.probe")
    log.setLevel(logging.CRITICAL)
    return log


# --- InfluxDB -----------------------------------------------------------------------------------------

def _influx_dir() -> Path:
    return STACK_DIR / "influxdb"


def _influx_token() -> str:
    token_file = _influx_dir() / "token"
    if not token_file.exists():
        token_file.parent.mkdir(parents=True, exist_ok=True)
        # A fresh random token per stack: nothing secret is ever committed.
        token_file.write_text(secrets.token_urlsafe(32))
        token_file.chmod(0o600)
    return token_file.read_text().strip()


def _influx_prepare() -> None:
    _run_script("build-influxdb.sh", INFLUXDB_VERSION=INFLUXDB_VERSION)
    _influx_dir().mkdir(parents=True, exist_ok=True)


def _influx_command() -> list[str]:
    d = _influx_dir()
    return [str(CACHE / f"influxdb-{INFLUXDB_VERSION}" / "influxd"),
            "--bolt-path", str(d / "influxd.bolt"), "--engine-path", str(d / "engine"),
            "--sqlite-path", str(d / "influxd.sqlite"), "--http-bind-address", f"127.0.0.1:{INFLUXDB_PORT}",
            "--ui-disabled", "--reporting-disabled", "--log-level", "warn",
            "--storage-cache-snapshot-write-cold-duration", "1m"]


def _influx_setup() -> None:
    """First start only: create the user, org, bucket and the token from .stack/influxdb/token."""
    base = f"http://127.0.0.1:{INFLUXDB_PORT}"
    if not requests.get(f"{base}/api/v2/setup", timeout=5).json().get("allowed"):
        return
    resp = requests.post(f"{base}/api/v2/setup", timeout=10, json={
        "username": INFLUX_USER, "password": secrets.token_urlsafe(16), "org": INFLUX_ORG,
        "bucket": INFLUX_BUCKET, "token": _influx_token()})
    if resp.status_code >= 300:
        raise StackError(f"influxdb setup failed: HTTP {resp.status_code} {resp.text[:200]}")


# --- Prometheus ---------------------------------------------------------------------------------------

def _prometheus_dir() -> Path:
    return STACK_DIR / "prometheus"


def _prometheus_prepare() -> None:
    _run_script("install-prometheus.sh")
    d = _prometheus_dir()
    (d / "data").mkdir(parents=True, exist_ok=True)
    consumers = ", ".join(f"'127.0.0.1:{p}'" for p in CONSUMER_METRICS_PORTS)
    (d / "prometheus.yml").write_text(f"""\
# Written by `healthpipe stack up`; the docker-compose equivalent is config/prometheus/prometheus.yml.
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs: [{{targets: ['127.0.0.1:{PROMETHEUS_PORT}']}}]
  - job_name: test-app
    static_configs: [{{targets: ['127.0.0.1:{DEMO_APP_PORT}'], labels: {{service: demo-app}}}}]
  - job_name: healthpipe-producer
    static_configs: [{{targets: ['127.0.0.1:{PRODUCER_METRICS_PORT}']}}]
  - job_name: healthpipe-consumer
    static_configs: [{{targets: [{consumers}]}}]
""")


def _prometheus_command() -> list[str]:
    d = _prometheus_dir()
    return [shutil.which("prometheus") or "/usr/bin/prometheus",
            f"--config.file={d / 'prometheus.yml'}", f"--storage.tsdb.path={d / 'data'}",
            f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}", "--web.enable-lifecycle",
            "--web.enable-admin-api", "--storage.tsdb.retention.time=15d", "--log.level=warn"]


# --- the stack ----------------------------------------------------------------------------------------

SERVICES: list[Service] = [
    Service("kafka", command=lambda: _java("kafka.Kafka", str(_kafka_dir() / "server.properties")),
            ready=_kafka_ready, prepare=_kafka_prepare, start_timeout=120),
    Service("influxdb", command=_influx_command, ready=lambda: _http_ok(f"http://127.0.0.1:{INFLUXDB_PORT}/health"),
            prepare=_influx_prepare, after_ready=_influx_setup),
    Service("prometheus", command=_prometheus_command, prepare=_prometheus_prepare,
            ready=lambda: _http_ok(f"http://127.0.0.1:{PROMETHEUS_PORT}/-/ready")),
    Service("demo-app", command=lambda: [sys.executable, "-m", "common.cli", "demo-app",
                                         "--host", "127.0.0.1", "--port", str(DEMO_APP_PORT)],
            ready=lambda: _http_ok(f"http://127.0.0.1:{DEMO_APP_PORT}/metrics")),
]


def _pipeline_env() -> dict[str, str]:
    return {**stack_env(), "HEALTHPIPE_CONFIG": str(ROOT / "config" / "healthpipe.yaml")}


# The pipeline itself, for `make up` without Docker: started after the stack, stopped before it.
PIPELINE: list[Service] = [
    Service("producer", command=lambda: [sys.executable, "-m", "producer"], env=_pipeline_env,
            ready=lambda: _http_ok(f"http://127.0.0.1:{PRODUCER_METRICS_PORT}/readyz")),
    Service("consumer", command=lambda: [sys.executable, "-m", "consumer"], env=_pipeline_env,
            ready=lambda: _http_ok(f"http://127.0.0.1:{CONSUMER_METRICS_PORTS[0]}/readyz")),
]


def service(name: str) -> Service:
    for s in SERVICES + PIPELINE:
        if s.name == name:
            return s
    raise StackError(f"unknown service {name!r}; known: {', '.join(s.name for s in SERVICES)}")


def _run_script(name: str, **env: str) -> None:
    """Run an install/build script; its full output goes to .stack/logs/<script>.log, its summary here."""
    log = STACK_DIR / "logs" / f"{name.removesuffix('.sh')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.Popen(["bash", str(SCRIPTS / name)], stdout=subprocess.PIPE, stderr=out, text=True,
                                env={**os.environ, **env, "HEALTHPIPE_CACHE": str(CACHE)})
        assert proc.stdout is not None
        for line in proc.stdout:  # the scripts' own progress lines ("building libflux ...")
            out.write(line)
            print(f"  {line.rstrip()}", flush=True)
    if proc.wait() != 0:
        raise StackError(f"{name} failed (exit {proc.returncode}); full log {log}:\n{_tail(log, 30)}")


def start(svc: Service) -> None:
    """Start `svc` unless it already runs; wait until it is ready."""
    if svc.pid() is not None and svc.ready():
        print(f"{svc.name}: already running (pid {svc.pid()})", flush=True)
        return
    if svc.pid() is not None:  # running but not ready: wait for it rather than starting a second copy
        _wait_ready(svc, time.monotonic())
        return
    svc.prepare()
    svc.pid_file.parent.mkdir(parents=True, exist_ok=True)
    svc.log_file.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with svc.log_file.open("ab") as log:
        proc = subprocess.Popen(svc.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=ROOT, start_new_session=True, env={**os.environ, **svc.env()})
    svc.pid_file.write_text(str(proc.pid))
    _wait_ready(svc, t0)


def _wait_ready(svc: Service, t0: float) -> None:
    while not svc.ready():
        pid = svc.pid()
        if pid is None:
            raise StackError(f"{svc.name} exited during start-up; see {svc.log_file}:\n{_tail(svc.log_file)}")
        if time.monotonic() - t0 > svc.start_timeout:
            raise StackError(f"{svc.name} not ready after {svc.start_timeout:.0f}s; see {svc.log_file}:\n"
                             f"{_tail(svc.log_file)}")
        time.sleep(0.5)
    svc.after_ready()
    print(f"{svc.name}: ready in {time.monotonic() - t0:.1f}s (pid {svc.pid()}, log {svc.log_file})", flush=True)


def stop(svc: Service, grace: float = 30.0) -> None:
    """SIGTERM the process group we started, SIGKILL after `grace` seconds; forget its pid."""
    pid = svc.pid()
    if pid is not None:
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            _signal_group(pid, signal.SIGKILL)
        print(f"{svc.name}: stopped (pid {pid})", flush=True)
    svc.pid_file.unlink(missing_ok=True)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)  # start_new_session made pid the group leader: children go too


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stack_env() -> dict[str, str]:
    return {
        "HEALTHPIPE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{KAFKA_PORT}",
        "HEALTHPIPE_EXTRACT__PROMETHEUS_URL": f"http://127.0.0.1:{PROMETHEUS_PORT}",
        "HEALTHPIPE_LOAD__INFLUXDB__URL": f"http://127.0.0.1:{INFLUXDB_PORT}",
        "HEALTHPIPE_LOAD__INFLUXDB__TOKEN": _influx_token(),
        "HEALTHPIPE_LOAD__INFLUXDB__ORG": INFLUX_ORG,
        "HEALTHPIPE_LOAD__INFLUXDB__BUCKET": INFLUX_BUCKET,
    }


def write_env_file() -> Path:
    path = STACK_DIR / "stack.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in stack_env().items()))
    path.chmod(0o600)
    return path


def up(names: list[str] | None = None) -> None:
    t0 = time.monotonic()
    for svc in SERVICES:
        if names is None or svc.name in names:
            start(svc)
    env = write_env_file()
    print(f"stack up in {time.monotonic() - t0:.1f}s; connection settings in {env}", flush=True)


def pipeline_up() -> None:
    """The stack, then producer and consumer in the background (make up without a Docker engine)."""
    up()
    for svc in PIPELINE:
        start(svc)
    print(f"""
healthpipe is running (native stack, no Docker):
  Prometheus  http://127.0.0.1:{PROMETHEUS_PORT}      demo app  http://127.0.0.1:{DEMO_APP_PORT}/metrics
  InfluxDB    http://127.0.0.1:{INFLUXDB_PORT}      token in {_influx_dir() / 'token'}
  producer    http://127.0.0.1:{PRODUCER_METRICS_PORT}/metrics   consumer http://127.0.0.1:{CONSUMER_METRICS_PORTS[0]}/metrics
Watch data arrive:  make status   (per-stage counts, lag, watermark age)
Logs:               make logs     ({STACK_DIR / 'logs'})
Stop everything:    make down""", flush=True)


def pipeline_down() -> None:
    for svc in reversed(PIPELINE):
        stop(svc)
    down()


def down(names: list[str] | None = None) -> None:
    for svc in reversed(SERVICES):
        if names is None or svc.name in names:
            stop(svc)


def status() -> bool:
    healthy = True
    rows = []
    for svc in SERVICES + [s for s in PIPELINE if s.pid() is not None]:
        pid = svc.pid()
        ok = pid is not None and svc.ready()
        healthy &= ok
        rows.append((svc.name, "healthy" if ok else ("starting/unhealthy" if pid else "stopped"),
                     str(pid or "-"), str(svc.log_file)))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"{r[0]:<{width[0]}}  {r[1]:<{width[1]}}  pid {r[2]:<{width[2]}}  {r[3]}")
    return healthy
