"""The secured native stack (`healthpipe stack up --secure`): whether the stack runs secured, its credentials, and
provisioning them once Kafka and InfluxDB are up.

Kafka: one SASL_SSL listener per broker (SCRAM-SHA-512 for every client; PLAIN for the broker itself, whose
password is in its properties file: SCRAM credentials live in the cluster's metadata, which a broker cannot read
before it has joined), a SASL_SSL controller listener, StandardAuthorizer with no access where no ACL is found.
User:hp-admin is the only super user (the stack's own, written to stack.env: the operator's file); each role gets
User:hp-<role> with only the ACLs of healthpipe.common.principals. InfluxDB: https with the same certificate, one
token per role with only its permissions. Everything secret sits in .stack/secure/ (mode 600), never in argv.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import SecretStr

from healthpipe.common.config import HealthpipeConfig, load_config
from healthpipe.common.principals import ROLES, USERNAMES, Role
from healthpipe.ops import provision
from healthpipe.ops.provision import MECHANISM, grant_acls, revoke_acl
from healthpipe.ops.stack.certs import Certificates, certificates
from healthpipe.ops.stack.paths import ROOT, STACK_DIR
from healthpipe.ops.stack.supervise import secret_file

ADMIN = "hp-admin"
__all__ = ["grant_acls", "revoke_acl"]  # the tests and bench/secure.py change ACLs through this module


def secure_dir() -> Path:
    return STACK_DIR / "secure"


def _mode_file() -> Path:
    return STACK_DIR / "secure-mode"


def is_secure() -> bool:
    """Whether the stack runs (or last ran) secured."""
    return _mode_file().exists()


def set_secure(secure: bool) -> None:
    STACK_DIR.mkdir(parents=True, exist_ok=True)
    if secure:
        _mode_file().write_text("1\n")
    else:
        _mode_file().unlink(missing_ok=True)


def certs() -> Certificates:
    return certificates(secure_dir() / "tls")


def password_file(user: str) -> Path:
    path = secure_dir() / "passwords" / user
    secret_file(path, lambda: secrets.token_urlsafe(24))
    return path


def password(user: str) -> str:
    return password_file(user).read_text().strip()


def influx_token_file(role: Role) -> Path:
    """The role's InfluxDB token, written once InfluxDB has made it (provision_influxdb)."""
    return secure_dir() / "influxdb-tokens" / role


def pipeline_config() -> HealthpipeConfig:
    """Topic, group and bucket names as the stack's pipeline uses them: config/healthpipe.yaml, no environment."""
    return load_config(ROOT / "config" / "healthpipe.yaml", environment=False)


def kafka_client_security(user: str = ADMIN) -> dict[str, str]:
    """librdkafka settings for `user` on the secured stack (the stack's own probes and admin calls)."""
    return {"security.protocol": "SASL_SSL", "sasl.mechanisms": MECHANISM if user != ADMIN else "PLAIN",
            "sasl.username": user, "sasl.password": password(user), "ssl.ca.location": str(certs().ca)}


def role_env(role: Role) -> dict[str, str]:
    """What a process of `role` needs on top of stack.env: its own principal and InfluxDB token (from files)."""
    env = {"HEALTHPIPE_KAFKA__SECURITY__SASL_MECHANISM": MECHANISM,
           "HEALTHPIPE_KAFKA__SECURITY__USERNAME": USERNAMES[role],
           "HEALTHPIPE_KAFKA__SECURITY__PASSWORD_FILE": str(password_file(USERNAMES[role]))}
    token = influx_token_file(role)
    if token.exists():
        env["HEALTHPIPE_LOAD__INFLUXDB__TOKEN_FILE"] = str(token)
        env["HEALTHPIPE_LOAD__INFLUXDB__TOKEN"] = ""
    return env


def operator_env() -> dict[str, str]:
    """stack.env's security part: TLS trust, and the stack's own identities (hp-admin, the operator token) for the
    person who started it; the pipeline's processes run with their role's instead (role_env)."""
    ca = str(certs().ca)
    return {"HEALTHPIPE_KAFKA__SECURITY__PROTOCOL": "SASL_SSL", "HEALTHPIPE_KAFKA__SECURITY__SASL_MECHANISM": "PLAIN",
            "HEALTHPIPE_KAFKA__SECURITY__USERNAME": ADMIN,
            "HEALTHPIPE_KAFKA__SECURITY__PASSWORD_FILE": str(password_file(ADMIN)),
            "HEALTHPIPE_KAFKA__SECURITY__CA_FILE": ca, "HEALTHPIPE_LOAD__INFLUXDB__CA_FILE": ca}


def write_role_env_files() -> list[Path]:
    """.stack/secure/<role>.env for each role: `set -a; . .stack/stack.env; . .stack/secure/consumer.env`."""
    out = []
    for role in ROLES:
        path = secure_dir() / f"{role}.env"
        path.write_text("".join(f"{k}={v}\n" for k, v in role_env(role).items()))
        path.chmod(0o600)
        out.append(path)
    return out


def provision_kafka(bootstrap: str) -> None:
    """As hp-admin (PLAIN, the broker's own user): SCRAM credentials for every role, healthpipe's topics, and each
    role's ACLs (healthpipe.ops.provision)."""
    operator = pipeline_config().model_copy(deep=True)
    operator.kafka.bootstrap_servers = bootstrap
    operator.kafka.client_config = kafka_client_security(ADMIN)
    provision.provision_kafka(operator, {user: password(user) for user in USERNAMES.values()})


def provision_influxdb(url: str, operator_token: str) -> None:
    """One token per role with only its permissions, in .stack/secure/influxdb-tokens/."""
    cfg = pipeline_config()
    operator = cfg.load.influxdb.model_copy(update={"url": url, "token": SecretStr(operator_token),
                                                    "ca_file": certs().ca})
    provision.provision_influxdb(operator, cfg, influx_token_file)
