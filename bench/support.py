"""What every benchmark script shares: process accounting, hermetic environments, counting and checking points.

Benchmarks run real processes against the native stack. A process they start gets exactly the settings the
benchmark means: the caller's HEALTHPIPE_* variables (a sourced .stack/stack.env) are removed first.
"""

from __future__ import annotations

import compileall
import itertools
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import orjson
import requests
import yaml
from confluent_kafka import Consumer, TopicPartition

from healthpipe.ops.stack import STACK_DIR
from tests.chaos.ledger import Ledger, point_of
from tests.support import influx
from tests.support.pipeline import committed_all, write_config

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
# every package of a checkout, this one (healthpipe/) or one from before the one-package layout (the rest)
PACKAGES = ("healthpipe", "common", "producer", "consumer", "verify", "archive", "tiers")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def run_until_committed(proc: subprocess.Popen, cfg, group: str, what: str, every: float = 0.05,
                        transactional: bool = False) -> float:
    """Seconds from now until `group` has committed every offset of the topic, checked every `every` s through
    one client (~5 ms a check: committed == end). A topic the producer wrote (`transactional`) may end in
    transaction markers, which no group commits past: tests.support.pipeline.committed_all knows them, but it reads
    the topic's tail through clients of its own (~0.6 s while behind, CPU the measured process then lacks on 2
    cores), so it is asked once a second and only for such topics."""
    t0 = time.perf_counter()
    client = Consumer({**cfg.kafka.as_librdkafka_dict(), "group.id": group})
    try:
        topic = cfg.kafka.topic
        parts = [TopicPartition(topic, p) for p in client.list_topics(topic, timeout=30).topics[topic].partitions]
        ends = {tp.partition: client.get_watermark_offsets(tp, timeout=30)[1] for tp in parts}
        for check in itertools.count(1):
            committed = {tp.partition: tp.offset for tp in client.committed(parts, timeout=30)}
            if all(committed[p] == end or (end == 0 and committed[p] < 0) for p, end in ends.items()):
                return time.perf_counter() - t0
            if transactional and check % int(1 / every) == 0 and committed_all(cfg, group):
                return time.perf_counter() - t0
            assert proc.poll() is None, f"{what} died"
            time.sleep(every)
    finally:
        client.close()


def compile_bytecode(root: Path = ROOT) -> None:
    """Write the bytecode of the packages of the checkout at `root`, as an install does (pip compiles what it
    installs; the image runs compileall). Benchmarks measure our processes, not Python's compiler: where
    PYTHONDONTWRITEBYTECODE is set (this machine, CI) nothing else writes it, and every process they start would
    compile our modules again (~40 ms of a consumer's start)."""
    for package in PACKAGES:
        if (root / package).is_dir():
            compileall.compile_dir(root / package, quiet=1)


def process_command(kind: str, config_file: Path, code: Path | None = None) -> list[str]:
    """The command line of `healthpipe <kind>` as a process, run from this checkout or from `code`; a checkout
    from before the one-package layout (no healthpipe/cli.py) runs its package's own `python -m <kind>`."""
    old_layout = code is not None and not (code / "healthpipe" / "cli.py").exists()
    return [sys.executable, "-m", *([kind] if old_layout else ["healthpipe", kind]), "--config", str(config_file)]


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any HEALTHPIPE_* variable, plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("HEALTHPIPE_")}, **extra}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def status_mb(pid: int, field: str) -> float:
    """A memory figure from /proc/<pid>/status (VmRSS now, VmHWM the peak), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb(pid: int) -> float:
    return status_mb(pid, "VmHWM")


def influxd_cpu_seconds() -> float:
    """CPU seconds the stack's influxd has used so far: what each contender costs InfluxDB, on the same 2 cores."""
    return cpu_seconds(int((STACK_DIR / "pids" / "influxdb.pid").read_text()))


def influxd_settled(idle_cores: float = 0.05, window: float = 1.0, give_up_after: float = 60.0) -> float:
    """Wait until influxd has used less than `idle_cores` over `window` s (its background compaction of the
    previous contender's points is done); the seconds waited. Each contender then starts with the same quiet
    InfluxDB: without this, whoever ran right after a ceiling run shared the cores with its compactions."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < give_up_after:
        before = influxd_cpu_seconds()
        time.sleep(window)
        if influxd_cpu_seconds() - before < idle_cores * window:
            break
    return time.perf_counter() - t0


def influx_count(settings, predicate: str, start: str = "-30d") -> int:
    """Points matching a Flux predicate, counted by InfluxDB itself (reading millions back would take minutes)."""
    flux = (f'from(bucket: "{settings.bucket}") |> range(start: {start}) |> filter(fn: (r) => {predicate}) '
            '|> group() |> count()')
    resp = requests.post(f"{settings.url}/api/v2/query", params={"org": settings.org}, data=flux, timeout=300,
                         verify=settings.tls_verify,
                         headers={"Authorization": f"Token {settings.token.get_secret_value()}",
                                  "Content-Type": "application/vnd.flux", "Accept": "application/csv"})
    resp.raise_for_status()
    rows = [r for r in resp.text.splitlines() if r and not r.startswith(",result") and r[0] == ","]
    return sum(int(r.split(",")[-1]) for r in rows) if rows else 0


def check_sample_of_points(settings, ledger: Ledger, series: int = 10, seed: int = 0) -> int:
    """Contents, not just counts: every point of `series` random ledger series, read back whole (measurement,
    tags, field, value, time), must equal the truth exactly. Returns the number of points compared."""
    instances = sorted({dict(p[1])["instance"] for p in ledger.truth})
    chosen = random.Random(seed).sample(instances, min(series, len(instances)))
    expected = {p for p in ledger.truth if dict(p[1])["instance"] in chosen}
    wanted = " or ".join(f'r.instance == "{i}"' for i in chosen)
    got = {point_of(r) for r in influx.points(settings, f'r.run == "{ledger.run}" and ({wanted})', start="0")}
    assert got == expected, f"contents differ: {len(expected - got)} missing, {len(got - expected)} extra"
    return len(expected)


def config_for(cfg, path: Path, code: Path | None) -> Path:
    """The config file for a process of this checkout, or (`code`) of an older one: then only the keys set
    here are written, without the sections older code does not know (it refuses unknown keys)."""
    if code is None:
        return write_config(cfg, path)
    data = orjson.loads(cfg.model_dump_json(exclude_defaults=True, exclude={"load": {"influxdb": {"token"}}}))
    for section in ("archive", "tiers", "features", "verify"):  # newer than any baseline worth comparing
        data.pop(section, None)
    path.write_text(yaml.safe_dump(data))
    return path
