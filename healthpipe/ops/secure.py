"""docker-compose's `secure` profile: its credentials, made and handed out by `healthpipe secure init` before Kafka
and InfluxDB start, and granted by `healthpipe secure grant` once they run (docs/security.md, "Docker Compose").

`init` keeps every secret once in DIR/source (a volume only it mounts) and copies to each consumer a folder of its
own (a volume only that consumer mounts), so that a container holds only its own secrets:

  kafka/     server.pem (key + chain: Kafka's PEM keystore), ca.pem, admin.password (hp-admin's: PLAIN)
  influxdb/  server.crt, server.key
  operator/  ca.pem, kafka.password (hp-admin's): secure-grant, influxdb-init, an operator's `healthpipe check`
  <role>/    ca.pem, kafka.password (hp-<role>'s: SCRAM), influxdb.token once granted (roles with InfluxDB rights)

The CA's private key is never written: it signs the one server certificate (for every --host) and is dropped.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from healthpipe.common.config import HealthpipeConfig
from healthpipe.common.errors import ConfigError
from healthpipe.common.principals import ROLES, USERNAMES, influx_grants

ADMIN = "hp-admin"


def _password(path: Path) -> str:
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(24))
    return path.read_text().strip()


def _hand_out(src: Path, dest: Path, name: str, owner: int | None) -> None:
    """Copy one secret into a consumer's folder, readable by that consumer's user only."""
    target = dest / name
    target.unlink(missing_ok=True)  # read-only once handed out
    shutil.copyfile(src, target)
    target.chmod(0o444 if name == "ca.pem" else 0o400)
    if owner is not None:
        os.chown(target, owner, owner)


def init(root: Path, hosts: tuple[str, ...], owners: dict[str, int]) -> list[Path]:
    """Make (once) the CA, the server certificate for `hosts` and a password per user in root/source, and copy to
    root/<consumer> what that consumer needs. `owners`: a folder name (or "*" for the rest) -> the uid that reads
    it (the container's user); ownership is only changed when running as root. Returns the folders written."""
    from healthpipe.ops.stack.certs import certificates

    source = root / "source"
    if not source.is_dir():
        raise ConfigError(f"{source} is not a folder: mount the secure-source volume there")
    tls = certificates(source / "tls", hosts=hosts, ca_name="healthpipe compose CA")
    (source / "passwords").mkdir(mode=0o700, exist_ok=True)
    passwords = {user: source / "passwords" / user for user in (ADMIN, *USERNAMES.values())}
    for path in passwords.values():
        _password(path)
    plan: dict[str, dict[str, Path]] = {
        "kafka": {"server.pem": tls.server_pem, "ca.pem": tls.ca, "admin.password": passwords[ADMIN]},
        "influxdb": {"server.crt": tls.server_cert, "server.key": tls.server_key},
        "operator": {"ca.pem": tls.ca, "kafka.password": passwords[ADMIN]},
        **{role: {"ca.pem": tls.ca, "kafka.password": passwords[USERNAMES[role]]} for role in ROLES},
    }
    as_root = os.geteuid() == 0
    written = []
    for folder, files in plan.items():
        dest = root / folder
        if not dest.is_dir():
            raise ConfigError(f"{dest} is not a folder: mount the secure-{folder} volume there")
        owner = owners.get(folder, owners.get("*")) if as_root else None
        for name, src in files.items():
            _hand_out(src, dest, name, owner)
        if owner is not None:
            os.chown(dest, owner, owner)
        dest.chmod(0o700)
        written.append(dest)
    return written


def grant(root: Path, operator: HealthpipeConfig) -> list[str]:
    """As `operator` (hp-admin, the all-access InfluxDB token): each role's SCRAM credential and ACLs on Kafka, and
    an InfluxDB token with only the role's rights in root/<role>/influxdb.token. Returns the roles given a token."""
    from healthpipe.ops.provision import provision_influxdb, provision_kafka

    passwords = {}
    for role in ROLES:
        path = root / role / "kafka.password"
        try:
            passwords[USERNAMES[role]] = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{path}: {exc.strerror}: `healthpipe secure init` makes it") from None
    provision_kafka(operator, passwords)
    provision_influxdb(operator.load.influxdb, operator, lambda role: root / role / "influxdb.token")
    return [role for role in ROLES if influx_grants(operator, role)]
