"""InfluxDBLoader (the plan's SimpleInfluxDBLoader): one synchronous line-protocol write, one action per status.

`STATUS_ACTIONS` is the whole policy, as data (Telegraf's InfluxDB output makes the same choices):

    204        WRITTEN   every line is in
    400, 422   BISECT    some lines are bad: split until each bad line stands alone, write the good ones,
                         return the bad ones (they go to the dead-letter topic)
    413        SPLIT     the body is too large: write each half; a single line that is still too large is bad
    401, 403   FATAL     the token is refused: nothing will succeed until it is fixed
    404        FATAL     the org or bucket does not exist
    429, 503   RETRY     throttled / not ready: Retryable with the server's Retry-After
    other      RETRY     any other status, a connection error or a timeout: Retryable, the caller backs off

Requests are plain urllib3 POSTs to /api/v2/write over kept-alive connections. bench/write_path.py (B10) measured
influxdb-client's write_api at ~5-10 % more client CPU for the same bodies, and its import costs the consumer
~0.15 s at start; what does matter is the body size (load.influxdb.batch_size: 20k lines a request take a third
of the client CPU of 5k, and InfluxDB ingests them faster).

The loader never sleeps and never retries on its own: its callers (the consumer's hold, replay) decide how
to wait, so the consumer keeps polling Kafka meanwhile.
"""

from __future__ import annotations

import enum
import gzip
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import SSLError as Urllib3SSLError

from healthpipe.common.config import InfluxSettings
from healthpipe.common.errors import Fatal, Retryable, SinkUnavailable

log = logging.getLogger(__name__)


class Action(enum.Enum):
    WRITTEN = "written"
    BISECT = "bisect"
    SPLIT = "split"
    FATAL = "fatal"
    RETRY = "retry"


STATUS_ACTIONS: dict[int, Action] = {
    204: Action.WRITTEN, 400: Action.BISECT, 422: Action.BISECT, 413: Action.SPLIT,
    401: Action.FATAL, 403: Action.FATAL, 404: Action.FATAL, 429: Action.RETRY, 503: Action.RETRY,
}

_FATAL_REMEDY = {
    401: "InfluxDB refused the token (HTTP 401); check load.influxdb.token",
    403: "the token may not write to this bucket (HTTP 403); check load.influxdb.token's permissions",
    404: "org or bucket not found (HTTP 404); check load.influxdb.org and load.influxdb.bucket",
}


def action_for(status: int) -> Action:
    return STATUS_ACTIONS.get(status, Action.RETRY)


@dataclass(frozen=True, slots=True)
class RejectedLine:
    line: str
    status: int
    body: str


@dataclass
class WriteResult:
    written: int = 0
    rejected: list[RejectedLine] = field(default_factory=list)
    requests: int = 0


def _retry_after(response: urllib3.BaseHTTPResponse) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _body(response: urllib3.BaseHTTPResponse) -> str:
    return response.data[:1000].decode(errors="replace")


def lines_of(body: bytes, n_lines: int) -> list[str]:
    """The lines of a body of n_lines lines, each ending in a newline (only for a refused write: rare)."""
    return body.decode().split("\n")[:n_lines]


def untrusted_influxdb(settings: InfluxSettings, exc: Exception) -> str:
    return (f"TLS with InfluxDB at {settings.url} failed ({exc}): is load.influxdb.ca_file the CA that signed its "
            f"certificate?")


def _tls(settings: InfluxSettings) -> dict[str, Any]:
    """urllib3's certificate settings for an https URL (ignored for http)."""
    if not settings.verify_tls:
        return {"cert_reqs": "CERT_NONE"}
    return {"cert_reqs": "CERT_REQUIRED", **({"ca_certs": str(settings.ca_file)} if settings.ca_file else {})}


class InfluxDBLoader:
    def __init__(self, settings: InfluxSettings):
        self.settings = settings
        base = settings.url.rstrip("/")
        self._write_url = (f"{base}/api/v2/write?org={quote(settings.org, safe='')}"
                           f"&bucket={quote(settings.bucket, safe='')}&precision=ms")
        self._buckets_url = (f"{base}/api/v2/buckets?org={quote(settings.org, safe='')}"
                             f"&name={quote(settings.bucket, safe='')}")
        self._health_url = f"{base}/health"
        self._headers = {"Authorization": f"Token {settings.token.get_secret_value()}",
                         "Content-Type": "text/plain; charset=utf-8"}
        if settings.gzip:
            self._headers["Content-Encoding"] = "gzip"
        # One pool shared by the consumer's writer threads: a kept-alive connection each (consumer.writers).
        self._http = urllib3.PoolManager(maxsize=8, retries=False,
                                         timeout=urllib3.Timeout(total=settings.timeout_seconds),
                                         **_tls(settings))

    # --- the plan's API ----------------------------------------------------------------------------

    def load_data(self, data: Sequence[str]) -> bool:
        """Write `data` (line protocol) in batches of batch_size, once each: True when every line is in.

        False when InfluxDB rejected a line or was unavailable (the plan's boolean API; it neither sleeps nor
        retries). Pipelines use `consumer.influx_sink.InfluxSink`, which dead-letters rejected lines and
        lets the caller hold and retry.
        """
        size = self.settings.batch_size
        try:
            return all(not self.write(data[i:i + size]).rejected for i in range(0, len(data), size))
        except Retryable as exc:
            log.error("influx_write_failed error=%s", exc)
            return False

    def test_connection(self) -> bool:
        """True when InfluxDB is healthy and the bucket exists (and our token can see it)."""
        try:
            healthy = self._request("GET", self._health_url).status == 200
            return healthy and self.check_bucket()
        except (Fatal, Retryable) as exc:
            log.error("influx_connection_failed error=%s", exc)
            return False

    def close(self) -> None:
        self._http.clear()

    # --- what the sink uses ----------------------------------------------------------------------------

    def check_bucket(self) -> bool:
        """Fatal when the bucket is missing or our token cannot read it; Retryable when InfluxDB is not up."""
        response = self._request("GET", self._buckets_url)
        status = response.status
        if action_for(status) is Action.FATAL:
            raise Fatal(f"InfluxDB at {self.settings.url}: {_FATAL_REMEDY[status]}: {_body(response)[:200]}")
        if status != 200:
            raise SinkUnavailable(f"InfluxDB bucket lookup failed: HTTP {status}", _retry_after(response),
                                  reason=f"http_{status}")
        if not response.json().get("buckets"):  # a token without read access sees an empty list
            raise Fatal(f"bucket {self.settings.bucket!r} does not exist in org {self.settings.org!r} "
                        f"(or the token cannot see it); check load.influxdb.bucket")
        return True

    def write(self, lines: Sequence[str]) -> WriteResult:
        """Write one batch; bisect out rejected lines. Raises Retryable (SinkUnavailable) or Fatal."""
        result = WriteResult()
        self._write(list(lines), result)
        return result

    def _request(self, method: str, url: str, body: bytes | None = None) -> urllib3.BaseHTTPResponse:
        try:
            return self._http.request(method, url, body=body, headers=self._headers)
        except Urllib3SSLError as exc:  # the same certificate will be refused next time too
            raise Fatal(untrusted_influxdb(self.settings, exc)) from None
        except (Urllib3Error, OSError) as exc:
            raise SinkUnavailable(f"InfluxDB at {self.settings.url} unreachable: {type(exc).__name__}: {exc}",
                                  reason="unreachable") from None

    def write_body(self, body: bytes, n_lines: int) -> WriteResult:
        """write() for lines already encoded: `body` is n_lines lines, each ending in a newline. Only when
        InfluxDB refuses part of it are the lines split out, to bisect as write() does."""
        result = WriteResult()
        if n_lines:
            self._post(body, n_lines, None, result)
        return result

    def _write(self, lines: list[str], result: WriteResult) -> None:
        if lines:
            self._post("\n".join(lines).encode(), len(lines), lines, result)

    def _post(self, body: bytes, n_lines: int, lines: list[str] | None, result: WriteResult) -> None:
        result.requests += 1
        response = self._request("POST", self._write_url, gzip.compress(body, 1) if self.settings.gzip else body)
        status = response.status
        action = action_for(status)
        if action is Action.WRITTEN or 200 <= status < 300:
            result.written += n_lines
            return
        if action in (Action.BISECT, Action.SPLIT):
            if lines is None:
                lines = lines_of(body, n_lines)
            if len(lines) == 1:
                result.rejected.append(RejectedLine(lines[0], status, _body(response)))
                return
            mid = len(lines) // 2  # the good part of the batch still gets written
            self._write(lines[:mid], result)
            self._write(lines[mid:], result)
            return
        if action is Action.FATAL:
            raise Fatal(f"InfluxDB at {self.settings.url}: {_FATAL_REMEDY.get(status, status)}: "
                        f"{_body(response)[:200]}")
        raise SinkUnavailable(f"InfluxDB HTTP {status}: {_body(response)[:200]}", _retry_after(response),
                              reason=f"http_{status}")
