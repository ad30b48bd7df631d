"""The exception hierarchy of healthpipe.

Per-record problems (a bad sample, a malformed message) are values, not exceptions: see
`consumer.transformer.Rejected` and `consumer.dead_letters.DeadLetter`. Exceptions are for
batch- or infrastructure-level failures.
"""


class HealthpipeError(Exception):
    """Base class of every error healthpipe raises on purpose."""


class ConfigError(HealthpipeError):
    """The configuration is invalid; the message names the key path and what was expected."""


class PrometheusError(HealthpipeError):
    """Prometheus could not answer a query (after retries) or answered with an API error."""

    def __init__(self, query: str, detail: str):
        super().__init__(f"prometheus query {query!r} failed: {detail}")
        self.query = query
        self.detail = detail


class PublishError(HealthpipeError):
    """A Kafka transaction could not be committed; its watermark was not advanced."""


class InfluxUnavailableError(HealthpipeError):
    """InfluxDB cannot take writes right now (5xx, 429, connection error); retry later."""

    def __init__(self, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.retry_after = retry_after


class InfluxAuthError(HealthpipeError):
    """InfluxDB refused our token (401/403) or the bucket does not exist: nothing will succeed until fixed."""


class StackError(HealthpipeError):
    """The native stack could not be installed, started or reached."""
