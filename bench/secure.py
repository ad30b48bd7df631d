"""B2 on the secured stack against the plaintext one, in the same run: `python -m bench.secure [--samples N]`.

Each run switches the native stack between plaintext and secured (`healthpipe stack up [--secure]`, alternating
which goes first), pre-fills a topic with the same ledger (B2's: 1,000 samples a message) and runs `healthpipe
consumer` as its own process from start to every offset committed (bench.run's B2 measurement, unchanged). On the
secured stack the consumer is User:hp-consumer over SASL_SSL (SCRAM-SHA-512) and writes InfluxDB over https with
its own token; the pre-fill and the completeness check run as the operator. Completeness: every point in InfluxDB,
a sample compared value by value. Reported: samples/s, consumer CPU seconds per million samples, and the ratio
secured / plaintext of each pair measured back to back.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient

from bench.run import _until_committed
from bench.support import RESULTS, clean_env, compile_bytecode, config_for, process_command
from healthpipe.common.kafka import ensure_topics
from healthpipe.ops import stack
from healthpipe.ops.stack import security
from tests.chaos.ledger import generate
from tests.support import kafka
from tests.support.roles import as_role
from tests.support.services import from_environment


def one(secure: bool, n_samples: int, seed: int, tmp: Path) -> dict:
    stack.up(with_s3=stack.S3.pid() is not None, secure=secure)
    services = from_environment()  # stack.env changes with the mode
    assert services is not None
    operator = services.config(consumer={"metrics_port": 0}, pipeline={"log_level": "WARNING"})
    ensure_topics(operator)
    if secure:
        security.grant_acls(AdminClient(operator.kafka.as_librdkafka_dict()), operator, roles=("consumer",))
    ledger = generate(seed, max(1, n_samples // 1000), 1000, per_message=1000)
    kafka.produce(operator, operator.kafka.topic, ledger.messages)
    consumer = as_role(operator, "consumer") if secure else operator
    config_file = config_for(consumer, tmp / f"consumer-{'secure' if secure else 'plain'}.yaml", None)
    compile_bytecode()
    env = clean_env(HEALTHPIPE_LOAD__INFLUXDB__TOKEN=consumer.load.influxdb.token.get_secret_value())
    name = f"consumer-{'secure' if secure else 'plain'}"
    row = _until_committed(name, process_command("consumer", config_file), env, operator,
                           operator.kafka.group_id, ledger, tmp)
    return {"secure": secure, **row}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=2, help="pairs (plaintext, secured), alternating the order")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    was_secure = security.is_secure()
    rows, pairs = [], []
    try:
        with tempfile.TemporaryDirectory(prefix="hp-b2s-") as tmp:
            for r in range(args.runs):
                pair = {}
                for secure in ((False, True) if r % 2 == 0 else (True, False)):
                    row = one(secure, args.samples, seed=1000 + r, tmp=Path(tmp))
                    rows.append(row)
                    pair[secure] = row
                    print(json.dumps({k: row[k] for k in ("secure", "samples_per_s", "cpu_s_per_million")}),
                          flush=True)
                pairs.append({"throughput_ratio": pair[True]["samples_per_s"] / pair[False]["samples_per_s"],
                              "cpu_ratio": pair[True]["cpu_s_per_million"] / pair[False]["cpu_s_per_million"]})
    finally:
        stack.up(with_s3=stack.S3.pid() is not None, secure=was_secure)

    def median(key: str, secure: bool) -> float:
        return statistics.median(r[key] for r in rows if r["secure"] == secure)

    summary = {"samples": args.samples, "runs": args.runs,
               "plaintext_samples_per_s": median("samples_per_s", False),
               "secured_samples_per_s": median("samples_per_s", True),
               "plaintext_cpu_s_per_million": median("cpu_s_per_million", False),
               "secured_cpu_s_per_million": median("cpu_s_per_million", True),
               "throughput_ratio_per_pair": [round(p["throughput_ratio"], 3) for p in pairs],
               "cpu_ratio_per_pair": [round(p["cpu_ratio"], 3) for p in pairs],
               "throughput_ratio_median": statistics.median(p["throughput_ratio"] for p in pairs),
               "target_ratio": 0.9}
    (RESULTS / f"secure-{int(time.time())}.json").write_text(json.dumps({"summary": summary, "runs": rows}, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
