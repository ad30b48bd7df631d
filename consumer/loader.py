"""InfluxDBLoader (the plan's SimpleInfluxDBLoader): synchronous, batched line-protocol writes.

One action per HTTP status (as Telegraf's InfluxDB output does):
  204          written
  400 / 422    some points are bad: bisect the batch, write the good part, return the bad lines
  413          too large: split in halves and write each
  401 / 403    our token is refused: InfluxAuthError (nothing will succeed until it is fixed)
  404          the org or bucket does not exist: InfluxAuthError too (configuration, not data)
  429 / 503    InfluxUnavailableError with the server's Retry-After
  other 5xx, connection errors, timeouts: InfluxUnavailableError, the caller backs off
The loader never sleeps: the consumer decides how to wait, so it can keep polling Kafka meanwhile.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from common.config import InfluxSettings
from common.errors import InfluxAuthError, InfluxUnavailableError

log = logging.getLogger(__name__)


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


def _retry_after(exc: ApiException) -> float | None:
    headers: Any = exc.headers or {}
    value = headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _body(exc: ApiException) -> str:
    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else str(exc.body or "")
    return body[:1000]


class InfluxDBLoader:
    def __init__(self, settings: InfluxSettings):
        self.settings = settings
        self.client = InfluxDBClient(url=settings.url, token=settings.token.get_secret_value(), org=settings.org,
                                     timeout=int(settings.timeout_seconds * 1000), enable_gzip=settings.gzip,
                                     retries=False)
        self.write_api = self.client.write_api(write_options=SYNCHRONOUS)

    # --- the plan's API ----------------------------------------------------------------------------

    def load_data(self, data: Sequence[str], max_attempts: int = 5) -> bool:
        """Write `data` (line protocol) in batches, retrying unavailability with backoff.

        True when every line was written; False when InfluxDB rejected some lines or stayed unavailable.
        The consumer uses `write()` instead, which reports rejected lines for the dead-letter topic.
        """
        ok = True
        size = self.settings.batch_size
        for i in range(0, len(data), size):
            for attempt in range(max_attempts):
                try:
                    result = self.write(data[i:i + size])
                    ok &= not result.rejected
                    break
                except InfluxUnavailableError as exc:
                    if attempt == max_attempts - 1:
                        log.error("influx_write_gave_up attempts=%d error=%s", max_attempts, exc)
                        return False
                    time.sleep(backoff(attempt, exc.retry_after))
        return ok

    def test_connection(self) -> bool:
        """True when InfluxDB is healthy and the bucket exists (and our token can see it)."""
        try:
            return self.client.ping() and self.check_bucket()
        except (InfluxAuthError, InfluxUnavailableError, ApiException, Urllib3Error) as exc:
            log.error("influx_connection_failed error=%s", exc)
            return False

    def close(self) -> None:
        self.write_api.close()
        self.client.close()

    # --- the consumer's API ----------------------------------------------------------------------------

    def check_bucket(self) -> bool:
        """Raise InfluxAuthError when the bucket is missing or our token cannot read it."""
        try:
            bucket = self.client.buckets_api().find_bucket_by_name(self.settings.bucket)
        except ApiException as exc:
            if exc.status in (401, 403):
                raise InfluxAuthError(f"InfluxDB at {self.settings.url} refused the token "
                                      f"(HTTP {exc.status}); check load.influxdb.token") from None
            raise InfluxUnavailableError(f"InfluxDB bucket lookup failed: HTTP {exc.status}") from None
        except Urllib3Error as exc:
            raise InfluxUnavailableError(f"InfluxDB at {self.settings.url} unreachable: {exc}") from None
        if bucket is None:
            raise InfluxAuthError(f"bucket {self.settings.bucket!r} does not exist in org {self.settings.org!r} "
                                  f"(or the token cannot see it); check load.influxdb.bucket")
        return True

    def write(self, lines: Sequence[str]) -> WriteResult:
        """Write one batch; bisect out rejected lines. Raises InfluxUnavailableError / InfluxAuthError."""
        result = WriteResult()
        self._write(list(lines), result)
        return result

    def _write(self, lines: list[str], result: WriteResult) -> None:
        if not lines:
            return
        result.requests += 1
        try:
            self.write_api.write(self.settings.bucket, self.settings.org, "\n".join(lines).encode(),
                                 write_precision=WritePrecision.MS)  # type: ignore[arg-type]
            result.written += len(lines)
            return
        except ApiException as exc:
            status = exc.status or 0
            if status in (400, 422):
                if len(lines) == 1:
                    result.rejected.append(RejectedLine(lines[0], status, _body(exc)))
                    return
                self._split(lines, result)  # find the bad points; the good ones get written
                return
            if status == 413:
                if len(lines) == 1:
                    result.rejected.append(RejectedLine(lines[0], status, _body(exc)))
                    return
                self._split(lines, result)
                return
            if status in (401, 403):
                raise InfluxAuthError(f"InfluxDB refused the token (HTTP {status}): {_body(exc)[:200]}") from None
            if status == 404:
                raise InfluxAuthError(f"InfluxDB: org or bucket not found (HTTP 404): {_body(exc)[:200]}") from None
            raise InfluxUnavailableError(f"InfluxDB HTTP {status}: {_body(exc)[:200]}", _retry_after(exc)) from None
        except Urllib3Error as exc:
            raise InfluxUnavailableError(f"InfluxDB unreachable: {type(exc).__name__}: {exc}") from None
        except OSError as exc:
            raise InfluxUnavailableError(f"InfluxDB unreachable: {exc}") from None

    def _split(self, lines: list[str], result: WriteResult) -> None:
        mid = len(lines) // 2
        self._write(lines[:mid], result)
        self._write(lines[mid:], result)


def backoff(attempt: int, retry_after: float | None = None, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds to wait before retry `attempt` (0-based): Retry-After if the server said, else full jitter."""
    if retry_after is not None:
        return min(retry_after, 300.0)
    return random.uniform(0, min(cap, base * 2 ** attempt))
