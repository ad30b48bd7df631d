"""InfluxDB 2.7 on the native stack, built once by scripts/stack/build-influxdb.sh; first start sets up the user,
org, bucket and the token kept in .stack/influxdb/token."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import requests
from pydantic import SecretStr

from healthpipe.ops.influxdb_setup import setup_influxdb
from healthpipe.ops.stack.paths import CACHE, INFLUX, INFLUXDB_VERSION, PORTS, STACK_DIR
from healthpipe.ops.stack.security import certs, is_secure, provision_influxdb
from healthpipe.ops.stack.supervise import Service, run_script, secret_file


def influx_dir() -> Path:
    return STACK_DIR / "influxdb"


def influx_token() -> str:
    return secret_file(influx_dir() / "token", lambda: secrets.token_urlsafe(32))


def _influx_prepare() -> None:
    run_script("build-influxdb.sh", INFLUXDB_VERSION=INFLUXDB_VERSION)
    influx_dir().mkdir(parents=True, exist_ok=True)


def influx_engine_path() -> Path:
    return Path(os.environ.get("HEALTHPIPE_INFLUX_ENGINE_PATH", influx_dir() / "engine"))


def influx_url() -> str:
    """https on the secured stack (the stack's own certificate), http otherwise."""
    return f"{'https' if is_secure() else 'http'}://127.0.0.1:{PORTS.influxdb}"


def _influx_ready() -> bool:
    try:
        return requests.get(f"{influx_url()}/health", timeout=2, verify=str(certs().ca) if is_secure() else True) \
            .status_code == 200
    except requests.RequestException:
        return False


def _influx_command() -> list[str]:
    d = influx_dir()
    tls = certs() if is_secure() else None
    return [str(CACHE / f"influxdb-{INFLUXDB_VERSION}" / "influxd"),
            *(["--tls-cert", str(tls.server_cert), "--tls-key", str(tls.server_key), "--tls-min-version", "1.2"]
              if tls else []),
            "--bolt-path", str(d / "influxd.bolt"), "--engine-path", str(influx_engine_path()),
            "--sqlite-path", str(d / "influxd.sqlite"), "--http-bind-address", f"127.0.0.1:{PORTS.influxdb}",
            "--ui-disabled", "--reporting-disabled", "--log-level", "warn",
            "--storage-cache-snapshot-write-cold-duration", "1m"]


def _influx_setup() -> None:
    """First start only: the user, org, bucket and the token from .stack/influxdb/token; on the secured stack,
    a token per role too."""
    update = {"url": influx_url(), "token": SecretStr(influx_token())}
    if is_secure():
        update["ca_file"] = certs().ca
    setup_influxdb(INFLUX.model_copy(update=update))  # the same user as compose's influxdb-init
    if is_secure():
        provision_influxdb(influx_url(), influx_token())


def influx_service() -> Service:
    return Service("influxdb", command=_influx_command, ready=_influx_ready, prepare=_influx_prepare,
                   after_ready=_influx_setup)
