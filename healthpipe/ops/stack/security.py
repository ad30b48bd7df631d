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

from confluent_kafka.admin import AclBinding, AclBindingFilter, AdminClient, UserScramCredentialAlteration

from healthpipe.common.config import HealthpipeConfig, load_config
from healthpipe.common.errors import StackError
from healthpipe.common.principals import ROLES, USERNAMES, KafkaGrant, Role, influx_grants, kafka_grants
from healthpipe.ops.stack.certs import Certificates, certificates
from healthpipe.ops.stack.paths import ROOT, STACK_DIR
from healthpipe.ops.stack.supervise import secret_file

ADMIN = "hp-admin"
MECHANISM = "SCRAM-SHA-512"


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


def _acl_binding(user: str, grant: KafkaGrant) -> AclBinding:
    from confluent_kafka.admin import AclOperation, AclPermissionType, ResourcePatternType, ResourceType

    # librdkafka calls the cluster resource BROKER
    return AclBinding(ResourceType["BROKER" if grant.resource == "CLUSTER" else grant.resource], grant.name,
                      ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL,
                      f"User:{user}", "*", AclOperation[grant.operation], AclPermissionType.ALLOW)


def provision_kafka(bootstrap: str) -> None:
    """As hp-admin (PLAIN, the broker's own user): SCRAM credentials for every role, healthpipe's topics, and each
    role's ACLs. Idempotent: credentials are upserted with the passwords on file, ACLs and topics created if missing."""
    from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

    from healthpipe.common.kafka import ensure_topics

    admin = AdminClient({"bootstrap.servers": bootstrap, **kafka_client_security(ADMIN)})
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(user, info, password(user).encode()) for user in USERNAMES.values()]
    for user, fut in admin.alter_user_scram_credentials(upserts).items():
        try:
            fut.result(30)
        except Exception as exc:
            raise StackError(f"cannot set the SCRAM credential of {user}: {exc}") from None
    cfg = pipeline_config()
    admin_cfg = cfg.model_copy(deep=True)
    admin_cfg.kafka.bootstrap_servers = bootstrap
    admin_cfg.kafka.client_config = kafka_client_security(ADMIN)
    ensure_topics(admin_cfg)
    grant_acls(admin, cfg)


def grant_acls(admin: AdminClient, cfg: HealthpipeConfig, roles: tuple[Role, ...] = ROLES) -> None:
    """Each role's ACLs on `cfg`'s topics and groups (the stack's own names; a test's own)."""
    bindings = [_acl_binding(USERNAMES[role], g) for role in roles for g in kafka_grants(cfg, role)]
    for binding, fut in admin.create_acls(bindings).items():
        try:
            fut.result(30)
        except Exception as exc:
            raise StackError(f"cannot create the ACL {binding}: {exc}") from None


def revoke_acl(admin: AdminClient, role: Role, grant: KafkaGrant) -> None:
    """Delete one ACL of a role (the fault tests revoke a right at run time)."""
    b = _acl_binding(USERNAMES[role], grant)
    match = AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation,
                             b.permission_type)
    for fut in admin.delete_acls([match]).values():
        fut.result(30)


def provision_influxdb(url: str, operator_token: str) -> None:
    """One token per role with only its permissions (made once; a token on file is kept)."""
    from influxdb_client import InfluxDBClient, Permission, PermissionResource

    cfg = pipeline_config()
    with InfluxDBClient(url=url, token=operator_token, ssl_ca_cert=str(certs().ca), timeout=30_000) as client:
        org = client.organizations_api().find_organizations(org=cfg.load.influxdb.org)[0]
        buckets = {b.name: b.id for b in client.buckets_api().find_buckets(org=org.name, limit=100).buckets}
        for role in ROLES:
            path = influx_token_file(role)
            grants = influx_grants(cfg, role)
            if path.exists() or not grants:
                continue
            permissions = []
            for g in grants:
                if g.bucket is not None and g.bucket not in buckets:  # a warm bucket tiers apply makes later
                    bucket = client.buckets_api().create_bucket(bucket_name=g.bucket, org=org.name)
                    buckets[g.bucket] = bucket.id
                resource = PermissionResource(type=g.resource, org_id=org.id,
                                              id=buckets[g.bucket] if g.bucket else None)
                permissions.append(Permission(action=g.action, resource=resource))
            auth = client.authorizations_api().create_authorization(
                org_id=org.id, permissions=permissions)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(auth.token)
            path.chmod(0o600)
