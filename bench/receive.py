"""B11: remote-write receive throughput, healthpipe receive against Telegraf, side by side in one run:
`python -m bench.receive [--requests 400] [--runs 2] [--code DIR] [--pka BINARY]`.

A bench client posts pre-built remote-write 1.0 requests of 2,000 samples (100 series x 20 samples, snappy
protobuf, as Prometheus sends them) from 1 and from 4 concurrent connections ("shards") to each receiver, each run
as its own process on the native stack's Kafka, and reports samples/s (wall time from the first request to the
last answer) and the receiver's CPU seconds per million samples (/proc). The order alternates per run.

Telegraf: http_listener_v2 with the prometheusremotewrite parser into outputs.kafka (acks=-1), built by
scripts/stack/build-telegraf.sh. With `--pka BINARY`, also Telefonica's prometheus-kafka-adapter
(scripts/stack/build-pka.sh; acks=all, zstd, JSON, a message a sample; GIN_MODE=release and LOG_LEVEL=warn, so
that it does not log every request). Not the same guarantee: Telegraf answers 204 once it has parsed the request
and sends to Kafka afterwards (a crash in between loses the batch), PKA once it has handed the records to
librdkafka; healthpipe answers after Kafka acknowledged. Telegraf's parser and PKA speak 1.0 only, so all get 1.0.
Completeness: every sample in the topic, counted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

from bench.run import telegraf_binary
from bench.support import RESULTS, clean_env, compile_bytecode, config_for, cpu_seconds, process_command
from healthpipe.common.kafka import ensure_topics
from tests.support.pipeline import free_port
from tests.support.services import from_environment
from tests.unit.test_receive_decode import request_v1, snappy

SERIES, POINTS = 100, 20  # 2,000 samples a request: Prometheus' max_samples_per_send default
HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
           "X-Prometheus-Remote-Write-Version": "0.1.0"}
TELEGRAF_CONF = """
[agent]
  interval = "1s"
  flush_interval = "100ms"
  metric_batch_size = 5000
  metric_buffer_limit = 2000000
  omit_hostname = true
  quiet = true
[[inputs.http_listener_v2]]
  service_address = "127.0.0.1:{port}"
  paths = ["/api/v1/write"]
  methods = ["POST"]
  data_format = "prometheusremotewrite"
[[outputs.kafka]]
  brokers = ["{brokers}"]
  topic = "{topic}"
  required_acks = -1
  compression_codec = 4
  data_format = "influx"  # line protocol: Telegraf's own, and its cheapest
  max_message_bytes = 1000000
"""


def bodies(n: int, t0: int) -> list[bytes]:
    """`n` distinct requests of SERIES x POINTS samples (later requests, later timestamps)."""
    out = []
    for r in range(n):
        base = t0 + r * POINTS * 15_000
        series = [({"__name__": "bench_requests_total", "job": "bench", "instance": f"host-{i}:9100",
                    "code": "200"}, [(base + 15_000 * k, float(r * 1000 + k) + 0.25) for k in range(POINTS)])
                  for i in range(SERIES)]
        out.append(snappy(request_v1(series)))
    return out


def _ready(url: str) -> bool:
    try:
        requests.post(url, data=b"", headers=HEADERS, timeout=2)
        return True
    except requests.RequestException:
        return False


def drive(url: str, payloads: list[bytes], shards: int) -> float:
    """Post every payload, `shards` connections at once (each its share, in order); seconds from first to last."""
    failures: list[str] = []

    def shard(i: int) -> None:
        with requests.Session() as session:
            for body in payloads[i::shards]:
                for _ in range(20):  # a 5xx is retried, as Prometheus does
                    answer = session.post(url, data=body, headers=HEADERS, timeout=60)
                    if answer.status_code < 300:
                        break
                    time.sleep(0.5)
                else:
                    failures.append(f"{answer.status_code} {answer.text[:200]}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=shard, args=(i,)) for i in range(shards)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:3]
    return time.perf_counter() - t0


def one(kind: str, services, payloads: list[bytes], shards: int, tmp: Path, code: Path | None = None,
        pka: Path | None = None) -> dict:
    cfg = services.config(pipeline={"log_level": "WARNING"})
    ensure_topics(cfg)
    port = free_port()
    url = f"http://127.0.0.1:{port}/{'receive' if kind == 'pka' else 'api/v1/write'}"
    cwd = None
    if kind in ("healthpipe", "base"):  # base: the receiver of another checkout (--code), for a before/after ratio
        cfg.receive.port = port
        config_file = config_for(cfg, tmp / f"receive-{port}.yaml", None)
        command = process_command("receive", config_file)
        env = clean_env()
        if kind == "base":
            cwd, env = code, clean_env(PYTHONPATH=str(code))
    elif kind == "pka":
        command = [str(pka)]
        env = clean_env(KAFKA_BROKER_LIST=cfg.kafka.bootstrap_servers, KAFKA_TOPIC=cfg.kafka.topic, PORT=str(port),
                        KAFKA_ACKS="all", KAFKA_COMPRESSION="zstd", GIN_MODE="release", LOG_LEVEL="warn")
    else:
        conf = tmp / f"telegraf-{port}.conf"
        conf.write_text(TELEGRAF_CONF.format(port=port, brokers=cfg.kafka.bootstrap_servers, topic=cfg.kafka.topic))
        command, env = [str(telegraf_binary()), "--config", str(conf)], clean_env()
    with (tmp / f"{kind}-{port}.log").open("w") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
        try:
            deadline = time.monotonic() + 60
            while not _ready(url):
                assert time.monotonic() < deadline and proc.poll() is None, f"{kind} did not start"
                time.sleep(0.2)
            cpu0 = cpu_seconds(proc.pid)
            seconds = drive(url, payloads, shards)
            cpu = cpu_seconds(proc.pid) - cpu0
        finally:
            proc.terminate()
            proc.wait(60)
    samples = len(payloads) * SERIES * POINTS
    in_topic = _count_samples(cfg, kind)
    # PKA answers before librdkafka has sent, and does not flush when it is stopped: what it held then is lost
    # (counted, not asserted: that loss is one of the things B11 shows)
    assert kind == "pka" or in_topic >= samples, f"{kind}: {in_topic} of {samples} samples in Kafka"
    return {"kind": kind, "shards": shards, "samples": samples, "lost": max(0, samples - in_topic),
            "seconds": round(seconds, 3),
            "samples_per_s": round(samples / seconds), "cpu_s_per_million": round(cpu / samples * 1e6, 3)}


def _count_samples(cfg, kind: str) -> int:
    """Samples in the topic: healthpipe's messages hold a series' samples, Telegraf's one line per sample."""
    from tests.support.kafka import read_topic

    total = 0
    for msg in read_topic(cfg, cfg.kafka.topic, committed_only=False, timeout=300):
        if kind == "pka":
            total += 1  # a message a sample
        elif kind != "telegraf":
            total += len(json.loads(msg.value())["samples"])
        else:
            total += msg.value().count(b"\n") or 1
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--code", type=Path, default=None,
                        help="also run the receiver of this checkout (e.g. a worktree of the commit before a change)")
    parser.add_argument("--pka", type=Path, default=None, metavar="BINARY",
                        help="also run prometheus-kafka-adapter (scripts/stack/build-pka.sh prints its path)")
    args = parser.parse_args()
    services = from_environment()
    if services is None:
        sys.exit("B11 needs the native stack: make stack-up")
    compile_bytecode()
    telegraf_binary()
    payloads = bodies(args.requests, int(time.time() * 1000) - 86_400_000)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for run in range(args.runs):
            for shards in (1, 4):
                order = ["healthpipe", "telegraf", *(["base"] if args.code else []), *(["pka"] if args.pka else [])]
                for kind in order if run % 2 == 0 else order[::-1]:
                    row = one(kind, services, payloads, shards, Path(d), args.code, args.pka) | {"run": run}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    summary = {}
    for shards in (1, 4):
        def pick(kind: str, key: str, shards: int = shards) -> list:
            return [r[key] for r in rows if r["kind"] == kind and r["shards"] == shards]

        hp, tg = pick("healthpipe", "samples_per_s"), pick("telegraf", "samples_per_s")
        hc, tc = pick("healthpipe", "cpu_s_per_million"), pick("telegraf", "cpu_s_per_million")
        summary[f"{shards}_shards"] = {
            "healthpipe_samples_per_s": statistics.median(hp), "telegraf_samples_per_s": statistics.median(tg),
            "throughput_ratio": round(statistics.median(hp) / statistics.median(tg), 2),
            "healthpipe_cpu_s_per_million": statistics.median(hc),
            "telegraf_cpu_s_per_million": statistics.median(tc),
            "cpu_ratio": round(statistics.median(hc) / statistics.median(tc), 2)}
        for other in [kind for kind, asked in (("pka", args.pka), ("base", args.code)) if asked]:
            op, oc = pick(other, "samples_per_s"), pick(other, "cpu_s_per_million")
            summary[f"{shards}_shards"] |= {
                f"{other}_samples_per_s": statistics.median(op), f"{other}_cpu_s_per_million": statistics.median(oc),
                f"throughput_vs_{other}": round(statistics.median(hp) / statistics.median(op), 2),
                f"cpu_vs_{other}": round(statistics.median(hc) / statistics.median(oc), 2)}
    out = {"bench": "B11 receive", "requests": args.requests, "samples_per_request": SERIES * POINTS,
           "runs": rows, "summary": summary, "id": uuid.uuid4().hex[:8],
           "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    RESULTS.mkdir(exist_ok=True)  # a fresh clone has none (git-ignored)
    (RESULTS / f"receive-{int(time.time())}.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
