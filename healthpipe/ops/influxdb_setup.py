"""First start of an empty InfluxDB 2: the user, org and bucket, with the pipeline's token as the operator token.

Through InfluxDB's own setup API (`/api/v2/setup`), which any influxd honours: the native stack calls it after
influxd answers, and docker-compose's one-shot `influxdb-init` runs it as `healthpipe influxdb-setup`, so compose
does not depend on the official image's DOCKER_INFLUXDB_INIT_* entrypoint (the local stand-in has none).
"""

from __future__ import annotations

import os
import secrets

from influxdb_client import InfluxDBClient
from influxdb_client.domain.onboarding_request import OnboardingRequest
from influxdb_client.rest import ApiException
from influxdb_client.service.setup_service import SetupService
from urllib3.exceptions import HTTPError

from healthpipe.common.config import InfluxSettings
from healthpipe.common.errors import ConfigError, Fatal, SinkUnavailable

USERNAME = "healthpipe"


def setup_influxdb(settings: InfluxSettings, password: str | None = None, username: str = USERNAME) -> bool:
    """Set InfluxDB up with `settings`' org, bucket and token; True if this call did it, False if it was set up
    already (then nothing is changed: an existing token is never replaced). A password is only for people who log
    in to InfluxDB's UI; without one a random one is set (the pipeline authenticates with the token)."""
    token = settings.token.get_secret_value()
    if not token:
        raise ConfigError("load.influxdb.token is empty: set HEALTHPIPE_LOAD__INFLUXDB__TOKEN (or token_file)")
    request = OnboardingRequest(username=username, password=password or secrets.token_urlsafe(24),
                                org=settings.org, bucket=settings.bucket, token=token)
    with InfluxDBClient(**settings.client_kwargs()) as client:
        setup = SetupService(client.api_client)
        try:
            if not setup.get_setup().allowed:
                return False
            setup.post_setup(request)
        except ApiException as exc:
            detail = f"HTTP {exc.status} {exc.body or exc.reason}"
            raise Fatal(f"InfluxDB at {settings.url} refused the setup: {detail}") from None
        except HTTPError as exc:
            raise SinkUnavailable(f"InfluxDB at {settings.url} did not answer: {exc}") from exc
    return True


def password_from_environment() -> str | None:
    """INFLUXDB_PASSWORD, or the file INFLUXDB_PASSWORD_FILE names (the Docker/Kubernetes secrets convention)."""
    if path := os.environ.get("INFLUXDB_PASSWORD_FILE"):
        try:
            with open(path) as f:
                return f.read().strip() or None
        except OSError as exc:
            raise ConfigError(f"INFLUXDB_PASSWORD_FILE {path}: {exc.strerror}") from None
    return os.environ.get("INFLUXDB_PASSWORD") or None
