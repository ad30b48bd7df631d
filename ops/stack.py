"""The native stack: real Kafka, Prometheus, InfluxDB, the demo app (and on request an S3 server) as local
processes.

This machine has no Docker engine, so `healthpipe stack up` installs (once, cached under
~/.cache/healthpipe keyed by version) and starts each service from `scripts/stack/`, keeping its data,
pid and log under `.stack/`. `down` stops exactly the processes whose pids it recorded.

    healthpipe stack up [--kafka-brokers 1|3] [--with s3]
    healthpipe stack kill-broker N / start-broker N      (N = the broker's node id: 1, 2, 3)

Ports, org and bucket come from one place: `PORTS` below and the config defaults (common/config.py).
Prometheus' config is rendered from the one template docker-compose mounts, config/prometheus/prometheus.yml.
"""

from __future__ import annotations

import contextlib
import copy
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from common.config import ArchiveSettings, ConsumerSettings, InfluxSettings, ProducerSettings, VerifySettings
from common.errors import StackError

KAFKA_VERSION = "3.9.1"
INFLUXDB_VERSION = "2.7.12"
SEAWEEDFS_VERSION = "v0.0.0-20261109003541-7506e5f91cd6"
ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts" / "stack"
PROMETHEUS_TEMPLATE = ROOT / "config" / "prometheus" / "prometheus.yml"
CACHE = Path(os.environ.get("HEALTHPIPE_CACHE", Path.home() / ".cache" / "healthpipe"))
STACK_DIR = Path(os.environ.get("HEALTHPIPE_STACK_DIR", ROOT / ".stack"))
MAX_BROKERS = 3


@dataclass(frozen=True)
class Ports:
    """Every port the native stack uses, all on 127.0.0.1. The processes' own come from the config defaults."""

    kafka: tuple[int, ...] = (9092, 9094, 9096)  # broker listener of node id 1, 2, 3
    kafka_controller: tuple[int, ...] = (9093, 9095, 9097)
    prometheus: int = 9090
    influxdb: int = 8086
    demo_app: int = 8000
    s3: int = 8333
    producer_metrics: int = ProducerSettings().metrics_port
    archive_metrics: int = ArchiveSettings().metrics_port
    verify_metrics: int = VerifySettings().metrics_port
    consumer_metrics: tuple[int, ...] = field(default_factory=lambda: tuple(
        ConsumerSettings().metrics_port + i for i in range(4)))  # up to four local replicas

    @property
    def producer_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.producer_metrics}/metrics"

    @property
    def consumer_metrics_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}/metrics" for p in self.consumer_metrics]


PORTS = Ports()
INFLUX = InfluxSettings()  # org and bucket the stack sets up: the config defaults
INFLUX_USER = "healthpipe"
S3_BUCKET = "healthpipe-archive"


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


def _secret_file(path: Path, make: Callable[[], str]) -> str:
    """A secret generated once per stack and kept in .stack/ (mode 600): nothing secret is ever committed."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


# --- Kafka: 1 node, or a 3-node KRaft cluster (combined broker + controller roles) --------------------------

def _brokers_file() -> Path:
    return STACK_DIR / "kafka" / "brokers"


def kafka_brokers() -> int:
    """How many brokers the stack runs (or last ran): 1 or 3."""
    try:
        return int(_brokers_file().read_text())
    except (OSError, ValueError):
        return 1


def bootstrap_servers(brokers: int | None = None) -> str:
    return ",".join(f"127.0.0.1:{p}" for p in PORTS.kafka[:brokers or kafka_brokers()])


def _kafka_dir(node: int, brokers: int) -> Path:
    # A cluster of another size is another cluster (its own id and quorum): keep their data apart.
    return STACK_DIR / "kafka" / f"{brokers}-broker" / f"node-{node}"


def broker_name(node: int) -> str:
    """`kafka` is node 1 (the single broker); the cluster adds `kafka-2` and `kafka-3`."""
    return "kafka" if node == 1 else f"kafka-{node}"


def _kafka_properties(node: int, brokers: int) -> str:
    d = _kafka_dir(node, brokers)
    voters = ",".join(f"{n}@127.0.0.1:{PORTS.kafka_controller[n - 1]}" for n in range(1, brokers + 1))
    rf, min_isr = (3, 2) if brokers >= 3 else (1, 1)
    port, controller = PORTS.kafka[node - 1], PORTS.kafka_controller[node - 1]
    return f"""\
process.roles=broker,controller
node.id={node}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={d / "data"}
num.partitions=6
auto.create.topics.enable=false
# The internal topics hold transactions and group offsets: on a cluster they must survive a broker.
offsets.topic.replication.factor={rf}
offsets.topic.num.partitions=6
transaction.state.log.replication.factor={rf}
transaction.state.log.min.isr={min_isr}
transaction.state.log.num.partitions=6
min.insync.replicas={min_isr}
# An unclean election can drop transaction markers and stall read_committed consumers.
unclean.leader.election.enable=false
default.replication.factor={rf}
group.initial.rebalance.delay.ms=0
log.flush.interval.messages=9223372036854775807
# Enforce topic retention within seconds (Kafka checks every 5 minutes by default): the retention-overrun
# scenario gives a topic a few seconds of retention. Topics with the default 7 days are not affected.
log.retention.check.interval.ms=2000
# Two cores for everything: small thread pools per broker.
num.network.threads={2 if brokers > 1 else 3}
num.io.threads={2 if brokers > 1 else 8}
"""


_LOG4J = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
"""


def _kafka_prepare(node: int, brokers: int) -> None:
    _run_script("install-kafka.sh", KAFKA_VERSION=KAFKA_VERSION)
    d = _kafka_dir(node, brokers)
    (d / "data").mkdir(parents=True, exist_ok=True)
    (d / "server.properties").write_text(_kafka_properties(node, brokers))
    (d / "log4j.properties").write_text(_LOG4J)
    if not (d / "data" / "meta.properties").exists():
        cluster_id = f"healthpipe-native-{brokers}b"  # the same for every node of one cluster
        subprocess.run(_java(node, brokers, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                             "-c", str(d / "server.properties"), "--ignore-formatted"),
                       check=True, stdout=subprocess.DEVNULL)


def _java(node: int, brokers: int, main: str, *args: str) -> list[str]:
    lib = CACHE / f"kafka-{KAFKA_VERSION}" / "lib" / "*"
    heap = "512m" if brokers > 1 else "768m"  # three JVMs beside InfluxDB and Prometheus
    return ["java", "-Xms256m", f"-Xmx{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{_kafka_dir(node, brokers) / 'log4j.properties'}",
            "-cp", str(lib), main, *args]


def _kafka_ready(node: int, brokers: int) -> bool:
    """This broker answers metadata, and (on a cluster) reports itself among the registered brokers."""
    from confluent_kafka.admin import AdminClient

    try:
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{PORTS.kafka[node - 1]}", "log_level": 0,
                             "logger": _quiet_logger()})
        meta = admin.list_topics(timeout=2)
        return node in meta.brokers
    except Exception:
        return False


def _quiet_logger():  # librdkafka logs connection refusals while the broker starts; not interesting here
    import logging

    log = logging.getLogger("stack.kafka.probe")
    log.setLevel(logging.CRITICAL)
    return log


def _kafka_service(node: int, brokers: int) -> Service:
    properties = str(_kafka_dir(node, brokers) / "server.properties")
    return Service(broker_name(node), command=lambda: _java(node, brokers, "kafka.Kafka", properties),
                   ready=lambda: _kafka_ready(node, brokers), prepare=lambda: _kafka_prepare(node, brokers),
                   start_timeout=120)


def kafka_services(brokers: int) -> list[Service]:
    return [_kafka_service(n, brokers) for n in range(1, brokers + 1)]


# --- InfluxDB -----------------------------------------------------------------------------------------

def _influx_dir() -> Path:
    return STACK_DIR / "influxdb"


def influx_token() -> str:
    return _secret_file(_influx_dir() / "token", lambda: secrets.token_urlsafe(32))


def _influx_prepare() -> None:
    _run_script("build-influxdb.sh", INFLUXDB_VERSION=INFLUXDB_VERSION)
    _influx_dir().mkdir(parents=True, exist_ok=True)


def influx_engine_path() -> Path:
    return Path(os.environ.get("HEALTHPIPE_INFLUX_ENGINE_PATH", _influx_dir() / "engine"))


def _influx_command() -> list[str]:
    d = _influx_dir()
    return [str(CACHE / f"influxdb-{INFLUXDB_VERSION}" / "influxd"),
            "--bolt-path", str(d / "influxd.bolt"), "--engine-path", str(influx_engine_path()),
            "--sqlite-path", str(d / "influxd.sqlite"), "--http-bind-address", f"127.0.0.1:{PORTS.influxdb}",
            "--ui-disabled", "--reporting-disabled", "--log-level", "warn",
            "--storage-cache-snapshot-write-cold-duration", "1m"]


def _influx_setup() -> None:
    """First start only: create the user, org, bucket and the token from .stack/influxdb/token."""
    base = f"http://127.0.0.1:{PORTS.influxdb}"
    if not requests.get(f"{base}/api/v2/setup", timeout=5).json().get("allowed"):
        return
    resp = requests.post(f"{base}/api/v2/setup", timeout=10, json={
        "username": INFLUX_USER, "password": secrets.token_urlsafe(16), "org": INFLUX.org,
        "bucket": INFLUX.bucket, "token": influx_token()})
    if resp.status_code >= 300:
        raise StackError(f"influxdb setup failed: HTTP {resp.status_code} {resp.text[:200]}")


# --- Prometheus ---------------------------------------------------------------------------------------

def _prometheus_dir() -> Path:
    return STACK_DIR / "prometheus"


def render_prometheus_config(template: dict) -> dict:
    """docker-compose's prometheus.yml for the native stack: every target on 127.0.0.1, a 1 s scrape (tests
    wait for data), the consumer replicas found by DNS in Docker listed by port here, rule files by path."""
    cfg = copy.deepcopy(template)
    cfg["global"] = {**cfg.get("global", {}), "scrape_interval": "1s", "scrape_timeout": "1s",
                     "evaluation_interval": "1s"}
    cfg["rule_files"] = [str(PROMETHEUS_TEMPLATE.parent / Path(p).name) for p in cfg.get("rule_files", [])]
    for job in cfg["scrape_configs"]:
        for static in job.get("static_configs", []):
            static["targets"] = [f"127.0.0.1:{t.rsplit(':', 1)[1]}" for t in static["targets"]]
        if "dns_sd_configs" in job:
            del job["dns_sd_configs"]
            job["static_configs"] = [{"targets": [f"127.0.0.1:{p}" for p in PORTS.consumer_metrics]}]
    return cfg


def _prometheus_prepare() -> None:
    _run_script("install-prometheus.sh")
    d = _prometheus_dir()
    (d / "data").mkdir(parents=True, exist_ok=True)
    rendered = render_prometheus_config(yaml.safe_load(PROMETHEUS_TEMPLATE.read_text()))
    (d / "prometheus.yml").write_text(f"# Rendered by `healthpipe stack up` from {PROMETHEUS_TEMPLATE}\n"
                                      + yaml.safe_dump(rendered, sort_keys=False))


def _prometheus_command() -> list[str]:
    d = _prometheus_dir()
    return [shutil.which("prometheus") or "/usr/bin/prometheus",
            f"--config.file={d / 'prometheus.yml'}", f"--storage.tsdb.path={d / 'data'}",
            f"--web.listen-address=127.0.0.1:{PORTS.prometheus}", "--web.enable-lifecycle",
            "--web.enable-admin-api", "--storage.tsdb.retention.time=15d", "--log.level=warn"]


# --- S3 (SeaweedFS), on request: `stack up --with s3` -------------------------------------------------------

def _s3_dir() -> Path:
    return STACK_DIR / "s3"


def s3_credentials() -> tuple[str, str]:
    access = _secret_file(_s3_dir() / "access_key", lambda: "hp" + secrets.token_hex(8))
    secret = _secret_file(_s3_dir() / "secret_key", lambda: secrets.token_urlsafe(24))
    return access, secret


def _s3_prepare() -> None:
    _run_script("build-seaweedfs.sh", SEAWEEDFS_VERSION=SEAWEEDFS_VERSION)
    (_s3_dir() / "data").mkdir(parents=True, exist_ok=True)


def _s3_command() -> list[str]:
    return [str(CACHE / f"seaweedfs-{SEAWEEDFS_VERSION}" / "weed"), "mini", f"-dir={_s3_dir() / 'data'}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.port={PORTS.s3}", f"-bucket={S3_BUCKET}"]


def _s3_env() -> dict[str, str]:
    # `weed mini` takes its S3 identity from these (anonymous writes would be stored aws-chunked: corrupt).
    access, secret = s3_credentials()
    return {"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret}


def _s3_ready() -> bool:
    try:
        # Any HTTP answer (403 without a signature) means the S3 gateway listens.
        return requests.get(f"http://127.0.0.1:{PORTS.s3}/", timeout=2).status_code < 500
    except requests.RequestException:
        return False


S3 = Service("s3", command=_s3_command, ready=_s3_ready, prepare=_s3_prepare, env=_s3_env, start_timeout=120)


# --- the stack ----------------------------------------------------------------------------------------

def _base_services() -> list[Service]:
    return [
        Service("influxdb", command=_influx_command, ready=lambda: _http_ok(f"http://127.0.0.1:{PORTS.influxdb}/health"),
                prepare=_influx_prepare, after_ready=_influx_setup),
        Service("prometheus", command=_prometheus_command, prepare=_prometheus_prepare,
                ready=lambda: _http_ok(f"http://127.0.0.1:{PORTS.prometheus}/-/ready")),
        Service("demo-app", command=lambda: [sys.executable, "-m", "ops.cli", "demo-app",
                                             "--host", "127.0.0.1", "--port", str(PORTS.demo_app)],
                ready=lambda: _http_ok(f"http://127.0.0.1:{PORTS.demo_app}/metrics")),
    ]


def services(brokers: int | None = None, with_s3: bool | None = None) -> list[Service]:
    """The stack's services in start order (Kafka first, the optional S3 server last)."""
    brokers = brokers or kafka_brokers()
    with_s3 = S3.pid() is not None if with_s3 is None else with_s3
    return kafka_services(brokers) + _base_services() + ([S3] if with_s3 else [])


def _pipeline_env() -> dict[str, str]:
    return {**stack_env(), "HEALTHPIPE_CONFIG": str(ROOT / "config" / "healthpipe.yaml")}


# The pipeline itself, for `make up` without Docker: started after the stack, stopped before it.
PIPELINE: list[Service] = [
    Service("producer", command=lambda: [sys.executable, "-m", "producer"], env=_pipeline_env,
            ready=lambda: _http_ok(f"http://127.0.0.1:{PORTS.producer_metrics}/readyz")),
    Service("consumer", command=lambda: [sys.executable, "-m", "consumer"], env=_pipeline_env,
            ready=lambda: _http_ok(f"http://127.0.0.1:{PORTS.consumer_metrics[0]}/readyz")),
    # the cold tier into data/archive (a local directory; docker-compose's writes to its S3 service)
    Service("archive", command=lambda: [sys.executable, "-m", "archive"],
            env=lambda: {**_pipeline_env(), "HEALTHPIPE_ARCHIVE__TARGET": str(ROOT / "data" / "archive")},
            ready=lambda: _http_ok(f"http://127.0.0.1:{PORTS.archive_metrics}/readyz")),
]


def service(name: str) -> Service:
    if name == "kafka" or name.startswith("kafka-") and name[6:].isdigit():
        return broker_node(1 if name == "kafka" else int(name[6:]))
    others = _base_services() + [S3] + PIPELINE
    for s in others:
        if s.name == name:
            return s
    raise StackError(f"unknown service {name!r}; known: kafka, kafka-2, kafka-3, {', '.join(s.name for s in others)}")


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


def start(svc: Service, wait: bool = True) -> None:
    """Start `svc` unless it already runs; wait until it is ready (unless `wait` is false)."""
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
        # The services get a clean environment: a HEALTHPIPE_* variable exported in the caller's shell
        # must not reach (say) the demo app or the pipeline processes unless we put it there.
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHPIPE_")}
        proc = subprocess.Popen(svc.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=ROOT, start_new_session=True, env={**env, **svc.env()})
    svc.pid_file.write_text(str(proc.pid))
    if wait:
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


def kill(svc: Service) -> int | None:
    """SIGKILL the service's process group at once (a crash, not a shutdown); returns the pid killed."""
    pid = svc.pid()
    if pid is not None:
        _signal_group(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)
        print(f"{svc.name}: killed -9 (pid {pid})", flush=True)
    svc.pid_file.unlink(missing_ok=True)
    return pid


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)  # start_new_session made pid the group leader: children go too


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stack_env() -> dict[str, str]:
    env = {
        "HEALTHPIPE_KAFKA__BOOTSTRAP_SERVERS": bootstrap_servers(),
        "HEALTHPIPE_EXTRACT__PROMETHEUS_URL": f"http://127.0.0.1:{PORTS.prometheus}",
        "HEALTHPIPE_LOAD__INFLUXDB__URL": f"http://127.0.0.1:{PORTS.influxdb}",
        "HEALTHPIPE_LOAD__INFLUXDB__TOKEN": influx_token(),
        "HEALTHPIPE_LOAD__INFLUXDB__ORG": INFLUX.org,
        "HEALTHPIPE_LOAD__INFLUXDB__BUCKET": INFLUX.bucket,
    }
    if kafka_brokers() >= 3:
        env["HEALTHPIPE_KAFKA__REPLICATION_FACTOR"] = "3"
    if S3.pid() is not None:
        access, secret = s3_credentials()
        env.update({"HEALTHPIPE_ARCHIVE__S3__ENDPOINT": f"http://127.0.0.1:{PORTS.s3}",
                    "HEALTHPIPE_ARCHIVE__S3__ACCESS_KEY": access, "HEALTHPIPE_ARCHIVE__S3__SECRET_KEY": secret,
                    "HEALTHPIPE_ARCHIVE__S3__BUCKET": S3_BUCKET})
    return env


def write_env_file() -> Path:
    path = STACK_DIR / "stack.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in stack_env().items()))
    path.chmod(0o600)
    return path


def _switch_kafka(brokers: int) -> None:
    """Stop a Kafka of another size than asked for (its data stays, in its own folder)."""
    running = kafka_brokers()
    if running != brokers:
        for svc in reversed(kafka_services(running)):
            stop(svc)
    _brokers_file().parent.mkdir(parents=True, exist_ok=True)
    _brokers_file().write_text(str(brokers))


def up(names: list[str] | None = None, brokers: int = 1, with_s3: bool = False) -> None:
    if brokers not in (1, MAX_BROKERS):
        raise StackError(f"--kafka-brokers must be 1 or {MAX_BROKERS}, not {brokers}")
    t0 = time.monotonic()
    if names is None or any(n.startswith("kafka") for n in names):
        _switch_kafka(brokers)
    wanted = services(brokers, with_s3=with_s3 or S3.pid() is not None or bool(names and "s3" in names))
    kafka = [s for s in wanted if s.name.startswith("kafka") and (names is None or s.name in names or "kafka" in names)]
    # The nodes of a cluster wait for each other's votes: start them all, then wait for each.
    for svc in kafka:
        start(svc, wait=False)
    for svc in kafka:
        start(svc)
    for svc in wanted:
        if not svc.name.startswith("kafka") and (names is None or svc.name in names):
            start(svc)
    env = write_env_file()
    print(f"stack up in {time.monotonic() - t0:.1f}s ({brokers} Kafka broker{'s' if brokers > 1 else ''}"
          f"{', S3' if S3.pid() else ''}); connection settings in {env}", flush=True)


def pipeline_up() -> None:
    """The stack, the storage tiers, then the pipeline in the background (make up without a Docker engine)."""
    up()
    _apply_tiers()
    for svc in PIPELINE:
        start(svc)
    print(f"""
healthpipe is running (native stack, no Docker):
  Prometheus  http://127.0.0.1:{PORTS.prometheus}      demo app  http://127.0.0.1:{PORTS.demo_app}/metrics
  InfluxDB    http://127.0.0.1:{PORTS.influxdb}      token in {_influx_dir() / 'token'}
  producer    {PORTS.producer_metrics_url}   consumer {PORTS.consumer_metrics_urls[0]}
  archive     Parquet files in {ROOT / 'data' / 'archive'}   (healthpipe archive ls)
Watch data arrive:  make status   (per-stage counts, lag, watermark age)
Logs:               make logs     ({STACK_DIR / 'logs'})
Stop everything:    make down""", flush=True)


def _apply_tiers() -> None:
    from common.config import load_config
    from tiers.apply import plan_and_apply

    os.environ.update(stack_env())
    steps = plan_and_apply(load_config(ROOT / "config" / "healthpipe.yaml"), dry_run=False)
    print("tiers: " + ", ".join(f"{s.kind} {s.name} {s.action}" for s in steps), flush=True)


def pipeline_down() -> None:
    for svc in reversed(PIPELINE):
        stop(svc)
    down()


def down(names: list[str] | None = None) -> None:
    for svc in reversed(services(with_s3=True)):
        if names is None or svc.name in names:
            stop(svc)


def broker_node(node: int) -> Service:
    if not 1 <= node <= kafka_brokers():
        raise StackError(f"no broker with node id {node}: the stack runs {kafka_brokers()} (ids 1-{kafka_brokers()})")
    return kafka_services(kafka_brokers())[node - 1]


def under_replicated_partitions() -> int | None:
    """Partitions whose in-sync replicas are fewer than their replicas, across all topics; None if unreachable."""
    from confluent_kafka.admin import AdminClient

    try:
        meta = AdminClient({"bootstrap.servers": bootstrap_servers(), "log_level": 0,
                            "logger": _quiet_logger()}).list_topics(timeout=5)
    except Exception:
        return None
    return sum(1 for t in meta.topics.values() for p in t.partitions.values() if len(p.isrs) < len(p.replicas))


def status() -> bool:
    healthy = True
    rows = []
    for svc in services() + [s for s in PIPELINE if s.pid() is not None]:
        pid = svc.pid()
        ok = pid is not None and svc.ready()
        healthy &= ok
        rows.append((svc.name, "healthy" if ok else ("starting/unhealthy" if pid else "stopped"),
                     str(pid or "-"), str(svc.log_file)))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"{r[0]:<{width[0]}}  {r[1]:<{width[1]}}  pid {r[2]:<{width[2]}}  {r[3]}")
    if kafka_brokers() > 1:
        urp = under_replicated_partitions()
        print(f"kafka cluster: {kafka_brokers()} brokers, under-replicated partitions: "
              f"{'unknown (unreachable)' if urp is None else urp}")
    return healthy


# --- docker compose, where a Docker engine runs -------------------------------------------------------------

def docker_engine_runs() -> bool:
    return bool(shutil.which("docker")) and subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def compose_up() -> int:
    env_file = ROOT / ".env"
    if not env_file.exists():
        env_file.write_text(f"INFLUXDB_TOKEN={secrets.token_urlsafe(32)}\nS3_ACCESS_KEY=hp{secrets.token_hex(8)}\n"
                            f"S3_SECRET_KEY={secrets.token_urlsafe(24)}\n")
        env_file.chmod(0o600)
    return subprocess.run(["docker", "compose", "up", "-d", "--build"], cwd=ROOT).returncode


def compose_down() -> int:
    return subprocess.run(["docker", "compose", "down"], cwd=ROOT).returncode

