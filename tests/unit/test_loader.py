"""InfluxDBLoader's status handling, against a small scripted HTTP server (one class, so a fake is fine)."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import SecretStr

from healthpipe.common.config import InfluxSettings
from healthpipe.common.errors import Fatal, Retryable, SinkUnavailable
from healthpipe.common.retry import backoff
from healthpipe.sinks.influx.loader import STATUS_ACTIONS, Action, InfluxDBLoader, action_for


class FakeInflux:
    """Answers /api/v2/write by a rule: status for a body, recording every request."""

    def __init__(self, rule):
        self.rule = rule
        self.bodies: list[list[str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                lines = body.split("\n")
                fake.bodies.append(lines)
                status, headers = fake.rule(lines)
                payload = b'{"code":"invalid","message":"bad point"}' if status >= 300 else b""
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()


@pytest.fixture
def fake():
    servers = []

    def make(rule):
        servers.append(FakeInflux(rule))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def loader(url):
    return InfluxDBLoader(InfluxSettings(url=url, token=SecretStr("t"), org="o", bucket="b", timeout_seconds=5))


LINES = [f"m v={i} {i}" for i in range(16)]


def test_400_bisects_to_the_bad_points_and_writes_the_rest(fake):
    bad = {"m v=3 3", "m v=11 11"}
    server = fake(lambda lines: (400, {}) if bad & set(lines) else (204, {}))
    result = loader(server.url).write(LINES)
    assert {r.line for r in result.rejected} == bad
    assert all(r.status == 400 and "bad point" in r.body for r in result.rejected)
    assert result.written == 14
    written = {line for body in server.bodies for line in body if not bad & set(body)}
    assert written == set(LINES) - bad


def test_413_splits_until_batches_fit(fake):
    server = fake(lambda lines: (413, {}) if len(lines) > 4 else (204, {}))
    result = loader(server.url).write(LINES)
    assert result.written == 16 and not result.rejected
    assert max(len(b) for b in server.bodies if len(b) <= 4) == 4


@pytest.mark.parametrize("status", [401, 403, 404])
def test_auth_and_missing_bucket_are_fatal(fake, status):
    server = fake(lambda lines: (status, {}))
    with pytest.raises(Fatal):
        loader(server.url).write(LINES)


@pytest.mark.parametrize("status,retry_after", [(429, 7.0), (503, 3.0), (500, None), (502, None)])
def test_unavailable_carries_retry_after(fake, status, retry_after):
    headers = {"Retry-After": str(int(retry_after))} if retry_after else {}
    server = fake(lambda lines: (status, headers))
    with pytest.raises(SinkUnavailable) as exc:
        loader(server.url).write(LINES)
    assert exc.value.retry_after == retry_after
    assert len(server.bodies) == 1  # the loader never retries by itself: the consumer decides


def test_connection_refused_is_unavailable():
    with pytest.raises(Retryable, match="unreachable"):
        loader("http://127.0.0.1:9").write(LINES)


def test_load_data_answers_once_and_never_sleeps(fake):
    """The plan's boolean API: one attempt per batch, False when InfluxDB is unavailable (callers retry)."""
    calls = iter([(503, {"Retry-After": "30"}), (204, {})])
    server = fake(lambda lines: next(calls))
    assert loader(server.url).load_data(LINES) is False  # returns at once: a sleep of 30 s would time out
    assert loader(server.url).load_data(LINES) is True
    assert len(server.bodies) == 2


def test_the_status_table_is_the_policy():
    assert {s: a for s, a in STATUS_ACTIONS.items()} == {
        204: Action.WRITTEN, 400: Action.BISECT, 422: Action.BISECT, 413: Action.SPLIT, 401: Action.FATAL,
        403: Action.FATAL, 404: Action.FATAL, 429: Action.RETRY, 503: Action.RETRY}
    # anything unknown is retried, never dropped
    assert action_for(500) is action_for(502) is action_for(418) is Action.RETRY


def test_backoff_honours_retry_after_and_caps():
    assert backoff(0, 5.0) == 5.0
    assert all(0 <= backoff(10) <= 30 for _ in range(100))
