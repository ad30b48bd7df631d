"""Injection through /features against a second bucket that holds a secret series: every attempt is refused (400)
or reads nothing, and the secret never appears in an answer; the server runs with the operator's all-access token,
the worst case. A bearer token and https guard the endpoint on the secured stack."""

from __future__ import annotations

import time
import uuid
from urllib.parse import quote

import pytest
import requests

from healthpipe.common.messages import SeriesWindow, headers
from healthpipe.ml.serve import FeatureServer
from healthpipe.ops.stack import security
from tests.support import influx, kafka
from tests.support.pipeline import ConsumerThread

SECRET = f"s3cret{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def secret_bucket(secure_stack):
    """A bucket of its own holding one series labelled `secret=SECRET`, loaded through the real consumer."""
    from healthpipe.common.kafka import ensure_topics

    base = secure_stack.config()
    with influx.temporary_bucket(base.load.influxdb, "secret") as bucket:
        cfg = secure_stack.config(influxdb={"bucket": bucket.bucket}, consumer={"batch_max_age_seconds": 0.5})
        ensure_topics(cfg)
        now = int(time.time() * 1000)
        window = SeriesWindow("availability", "availability",
                              {"__name__": "up", "job": "vault", "instance": "v:1", "secret": SECRET},
                              now - 120_000, now, [(now - 60_000 + i * 1000, "42") for i in range(30)])
        kafka.produce(cfg, cfg.kafka.topic, [(window.key, window.to_json(), headers())])
        ConsumerThread(cfg, until_idle=3).join()
        yield bucket.bucket


PAYLOADS = [
    # into a label value: quoted, so it matches nothing
    "match[job]=" + quote('x") |> yield() from(bucket: "BUCKET") |> range(start: -1h) //'),
    "match[job]=" + quote('vault" or r.job != "'),
    "match[job]=" + quote("${secret}"),
    # into a label name, the query, the window: refused before anything is read
    "match[" + quote('job"] != "" or r["job') + "]=vault",
    "query=" + quote('availability") |> yield() from(bucket: "BUCKET") |> range(start: -1h) //'),
    "window=" + quote('5m) from(bucket: "BUCKET") |> range(start: -1h'),
    "query=" + quote('up{job="vault"} or vector(1)'),
]


def test_injection_into_features_reads_nothing_of_another_bucket(secure_stack, secret_bucket):
    token = "features-" + uuid.uuid4().hex
    cfg = secure_stack.config(features={"token": token, "stream": False,  # the Flux path: what is attacked
                                        "tls_cert_file": str(security.certs().server_cert),
                                        "tls_key_file": str(security.certs().server_key)})
    server = FeatureServer(cfg, port=0).start()
    base = f"https://127.0.0.1:{server.port}/features"
    ca = str(security.certs().ca)
    auth = {"Authorization": f"Bearer {token}"}
    try:
        assert requests.get(f"{base}?query=availability", verify=ca, timeout=30).status_code == 401
        statuses = []
        for payload in PAYLOADS:
            params = payload.replace("BUCKET", secret_bucket)
            url = f"{base}?{params}" if params.startswith("query=") else f"{base}?query=availability&{params}"
            answer = requests.get(url, headers=auth, verify=ca, timeout=30)
            assert SECRET not in answer.text, payload
            assert answer.status_code == 400 or (answer.status_code == 200 and answer.json()["series"] == []), \
                (payload, answer.status_code, answer.text[:300])
            statuses.append(answer.status_code)
        assert statuses == [200, 200, 200, 400, 400, 400, 400]
    finally:
        server.stop()
    # The control: the same server pointed at the secret bucket, asked plainly, does find the secret (so the
    # assertions above could have failed)
    direct = secure_stack.config(influxdb={"bucket": secret_bucket}, features={"stream": False})
    server = FeatureServer(direct, port=0).start()
    try:
        found = requests.get(f"http://127.0.0.1:{server.port}/features?query=availability&match[job]=vault",
                             timeout=30)
        assert found.status_code == 200 and SECRET in found.text, found.text[:300]
    finally:
        server.stop()
