"""Input an attacker (or a typo) sends: every one gets a clear 400-class error naming it, never a crash without an
answer, and never reaches a query language unquoted."""

import json
import urllib.error
import urllib.request

import pytest

from healthpipe.common.config import HealthpipeConfig, TiersSettings, WarmTier
from healthpipe.common.errors import ConfigError
from healthpipe.common.flux import flux_string
from healthpipe.common.times import parse_duration, parse_time
from healthpipe.ml.serve import FeatureServer, answer
from healthpipe.tiers.tasks import script


@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "1e300", "-1", "99999999999", "10000-01-01T00:00:00Z"])
def test_an_instant_out_of_range_is_a_config_error_naming_it(text):
    with pytest.raises(ConfigError, match="time"):
        parse_time(text)


@pytest.mark.parametrize("text", ["inf", "nan", "-5", "1e400"])
def test_a_duration_that_is_not_finite_is_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("params, named", [
    ({"at": ["inf"]}, "inf"),
    ({"window": ["1e300s"]}, "window"),
    ({"window": ["999999999y"]}, "max_window"),
    ({"window": ["5m) |> drop()"]}, "window"),
])
def test_features_refuses_bad_instants_and_windows_before_reading_anything(params, named):
    cfg = HealthpipeConfig()  # no InfluxDB is reachable here: reaching one would fail differently
    with pytest.raises(ConfigError, match=named.replace("(", r"\(")):
        answer(cfg, {"query": ["availability"], **params})


def _get(port: int, query: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/features?{query}", timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_the_server_answers_400_for_an_unrepresentable_instant_and_500_for_a_bug(monkeypatch):
    server = FeatureServer(HealthpipeConfig(features={"stream": False}), port=0, host="127.0.0.1").start()
    try:
        status, body = _get(server.port, "query=availability&at=inf")
        assert status == 400 and "inf" in body["error"], body
        monkeypatch.setattr("healthpipe.ml.serve.answer_many", lambda *a, **k: 1 / 0)
        status, body = _get(server.port, "query=availability")
        assert status == 500 and "ZeroDivision" not in body["error"], body  # the trace goes to the log only
    finally:
        server.stop()


EVIL = ['") |> drop(columns: ["x"]) //', "${secret}", 'a"b\\c', "line\nbreak", "ünï\u2028cøde"]


@pytest.mark.parametrize("evil", EVIL)
def test_tier_names_reach_flux_only_through_flux_string(evil):
    tiers = TiersSettings(counter_metric_types=[evil])
    text = script(tiers, WarmTier(name="w", bucket=evil, every="1m"), hot_bucket=evil)
    assert flux_string(evil) in text
    # outside the quoted literals nothing of the payload is left
    assert evil not in text.replace(flux_string(evil), "") or evil.isalnum()
    assert "${" not in text.replace("\\${", "")


@pytest.mark.parametrize("kind", ["status", "features"])
def test_an_idle_client_is_dropped_instead_of_holding_a_thread(monkeypatch, kind):
    import socket
    import time

    from prometheus_client import CollectorRegistry

    from healthpipe.common import observability

    monkeypatch.setattr(observability, "CLIENT_TIMEOUT_SECONDS", 0.5)
    server = (observability.StatusServer(CollectorRegistry(), lambda: True, 0, host="127.0.0.1") if kind == "status"
              else FeatureServer(HealthpipeConfig(features={"stream": False}), port=0)).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\n")  # and never the rest of the request
            t0 = time.monotonic()
            assert s.recv(1024) == b""  # the server hung up on us
            assert time.monotonic() - t0 < 5
    finally:
        server.stop()


def test_features_listens_on_loopback_unless_told_otherwise():
    server = FeatureServer(HealthpipeConfig(features={"stream": False}), port=0)
    try:
        assert server.address[0] == "127.0.0.1"
    finally:
        server.stop()


@pytest.mark.parametrize("params, named", [
    ({"match[a\") |> drop() //]": ["x"]}, "not a label name"),
    ({"match[1abc]": ["x"]}, "not a label name"),
    ({"match[query]": ["x"]}, "not a label name"),
    ({"query": ['request_rate"} or vector(1)']}, "no query named"),
])
def test_features_refuses_label_names_and_queries_that_are_not_names(params, named):
    with pytest.raises(ConfigError, match=named):
        answer(HealthpipeConfig(), {"query": ["availability"], **params})


def _status(url: str, token: str | None = None, **kwargs) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10, **kwargs) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_with_a_token_features_and_metrics_need_it_and_probes_do_not():
    cfg = HealthpipeConfig(features={"token": "s3cret-t0ken", "stream": False})
    server = FeatureServer(cfg, port=0).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert _status(f"{base}/metrics") == 401
        assert _status(f"{base}/features?query=availability") == 401
        assert _status(f"{base}/metrics", "wrong") == 401
        assert _status(f"{base}/metrics", "s3cret-t0ken") == 200
        assert _status(f"{base}/features?query=availability&at=inf", "s3cret-t0ken") == 400  # past the door
        assert _status(f"{base}/healthz") == 200 and _status(f"{base}/readyz") == 200
    finally:
        server.stop()
    assert "s3cret-t0ken" not in repr(cfg) and "s3cret-t0ken" in cfg.secrets()


def test_with_a_certificate_features_speaks_https_only(tmp_path):
    import ssl

    from healthpipe.ops.stack.certs import certificates

    tls = certificates(tmp_path)
    cfg = HealthpipeConfig(features={"tls_cert_file": str(tls.server_cert), "tls_key_file": str(tls.server_key),
                                     "stream": False})
    server = FeatureServer(cfg, port=0).start()
    try:
        trusting = ssl.create_default_context(cafile=str(tls.ca))
        assert _status(f"https://127.0.0.1:{server.port}/metrics", context=trusting) == 200
        with pytest.raises(urllib.error.URLError):  # the same server to a client that does not trust its CA
            _status(f"https://127.0.0.1:{server.port}/metrics", context=ssl.create_default_context())
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # and no plain http
            _status(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        server.stop()
