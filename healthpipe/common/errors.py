"""The exception hierarchy of healthpipe, grouped by what the caller must do.

    HealthpipeError
    ├── Retryable(retry_after)   try the same thing again later; nothing is lost meanwhile
    ├── Fatal                    stop: nothing will succeed until a person fixes the named cause
    │   └── ConfigError          ... and the cause is the configuration or a command-line argument
    └── Malformed(reason)        this one record is bad: dead-letter it with `reason` and carry on

Catch by action, not by backend: a loop that catches `Retryable` backs off (honouring `retry_after`
when the server said), whatever raised it. The backend-named classes below exist so a message and a
test can say where it came from; each sits under exactly one action.
"""

from __future__ import annotations

import re


class HealthpipeError(Exception):
    """Base class of every error healthpipe raises on purpose."""


class Retryable(HealthpipeError):
    """A service cannot do it right now (down, throttling, timing out): retry, after `retry_after` s if given.
    `reason` is a short word for metrics (`http_503`, `unreachable`); by default the error's kind."""

    def __init__(self, detail: str, retry_after: float | None = None, reason: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after
        self.reason = reason or re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__).lower()


class Fatal(HealthpipeError):
    """Retrying cannot help (bad token, missing bucket, rejected query): the message names cause and remedy."""


class ConfigError(Fatal):
    """The configuration or a command-line argument is invalid; the message names the key and what was expected."""


class Malformed(HealthpipeError):
    """One record breaks the contract; `reason` is a short machine-readable word for the dead-letter header."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# --- where it came from (each under one action) -------------------------------------------------------

class SinkUnavailable(Retryable):
    """A sink (InfluxDB, the archive store) cannot take writes now; the batch is held and retried."""


class PrometheusUnavailable(Retryable):
    """Prometheus did not answer (after the client's own retries), or answered 5xx/timeout/execution error."""

    def __init__(self, query: str, detail: str, retry_after: float | None = None):
        super().__init__(f"prometheus query {query!r} failed: {detail}", retry_after)
        self.query = query


class PrometheusTooLarge(PrometheusUnavailable):
    """Prometheus refused the answer's size (`--query.max-samples`, or 11,000 points per series): the same read in
    smaller pieces succeeds, so the producer splits it (by time, then by series) instead of retrying it whole."""


class PrometheusRejected(Fatal):
    """Prometheus refused the query itself (errorType bad_data): fix the PromQL, retrying will not help."""

    def __init__(self, query: str, detail: str):
        super().__init__(f"prometheus rejects query {query!r}: {detail}")
        self.query = query
        self.detail = detail


class PublishError(Retryable):
    """A Kafka transaction could not be committed; its watermark was not advanced. The window is read again."""


class DeadLetterError(Retryable):
    """Dead letters could not be delivered; the source offsets must not be committed."""


class KafkaAccessDenied(ConfigError):
    """Kafka refused this process's credentials, or the process refused the broker's certificate: retrying with
    the same settings cannot succeed (librdkafka would reconnect forever), so the process stops and says which."""


class StackError(Fatal):
    """The native stack could not be installed, started or reached."""


# Exit codes of every healthpipe command: scripts branch on these.
EXIT_OK, EXIT_DIFFERENCE, EXIT_CONFIG, EXIT_UNAVAILABLE = 0, 1, 2, 3


def exit_code(exc: HealthpipeError) -> int:
    """The process exit code for an error that ended a command."""
    if isinstance(exc, ConfigError):
        return EXIT_CONFIG
    if isinstance(exc, Retryable):
        return EXIT_UNAVAILABLE
    return 1
