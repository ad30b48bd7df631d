"""A config as one role of the secured native stack: its principal (SCRAM, password from its file) and its
InfluxDB token. For tests/secure and bench/secure.py."""

from __future__ import annotations

from healthpipe.common.config import HealthpipeConfig
from healthpipe.common.principals import USERNAMES, Role
from healthpipe.ops.stack import security


def as_role(cfg: HealthpipeConfig, role: Role) -> HealthpipeConfig:
    """`cfg` with the role's identity: User:hp-<role> (SCRAM, password from its file) and its InfluxDB token."""
    data = cfg.model_dump(mode="python")
    data["kafka"]["security"] = {**data["kafka"]["security"], "sasl_mechanism": security.MECHANISM,
                                 "username": USERNAMES[role], "password": "",
                                 "password_file": security.password_file(USERNAMES[role])}
    token = security.influx_token_file(role)
    data["load"]["influxdb"].update({"token": "", "token_file": token} if token.exists() else {"token": "none"})
    return type(cfg).model_validate(data)
