"""Granting each role of healthpipe.common.principals what it needs, on a secured Kafka and InfluxDB: SCRAM
credentials, ACLs and per-role InfluxDB tokens. One implementation for both places that provision: the secured
native stack (healthpipe.ops.stack.security) and docker-compose's `secure` profile (`healthpipe secure grant`).

Everything here is idempotent: credentials are upserted with the passwords given, ACLs created if missing, and a
token on file is kept while InfluxDB still knows it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from confluent_kafka.admin import AclBinding, AclBindingFilter, AdminClient, UserScramCredentialAlteration

from healthpipe.common.config import HealthpipeConfig, InfluxSettings
from healthpipe.common.errors import Fatal
from healthpipe.common.principals import ROLES, USERNAMES, KafkaGrant, Role, influx_grants, kafka_grants

MECHANISM = "SCRAM-SHA-512"


def _acl_binding(user: str, grant: KafkaGrant) -> AclBinding:
    from confluent_kafka.admin import AclOperation, AclPermissionType, ResourcePatternType, ResourceType

    # librdkafka calls the cluster resource BROKER
    return AclBinding(ResourceType["BROKER" if grant.resource == "CLUSTER" else grant.resource], grant.name,
                      ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL,
                      f"User:{user}", "*", AclOperation[grant.operation], AclPermissionType.ALLOW)


def set_scram_credentials(admin: AdminClient, passwords: Mapping[str, str]) -> None:
    """SCRAM-SHA-512 credentials for each user in `passwords` (user -> password), replacing older ones."""
    from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(user, info, pw.encode()) for user, pw in passwords.items()]
    for user, fut in admin.alter_user_scram_credentials(upserts).items():
        try:
            fut.result(30)
        except Exception as exc:
            raise Fatal(f"cannot set the SCRAM credential of {user}: {exc}") from None


def grant_acls(admin: AdminClient, cfg: HealthpipeConfig, roles: tuple[Role, ...] = ROLES) -> None:
    """Each role's ACLs on `cfg`'s topics and groups."""
    bindings = [_acl_binding(USERNAMES[role], g) for role in roles for g in kafka_grants(cfg, role)]
    for binding, fut in admin.create_acls(bindings).items():
        try:
            fut.result(30)
        except Exception as exc:
            raise Fatal(f"cannot create the ACL {binding}: {exc}") from None


def revoke_acl(admin: AdminClient, role: Role, grant: KafkaGrant) -> None:
    """Delete one ACL of a role (the fault tests revoke a right at run time)."""
    b = _acl_binding(USERNAMES[role], grant)
    match = AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation,
                             b.permission_type)
    for fut in admin.delete_acls([match]).values():
        fut.result(30)


def provision_kafka(operator: HealthpipeConfig, passwords: Mapping[str, str]) -> None:
    """As `operator` (a super user): each role's SCRAM credential, healthpipe's topics, and each role's ACLs."""
    from healthpipe.common.kafka import ensure_topics

    admin = AdminClient(operator.kafka.as_librdkafka_dict())
    set_scram_credentials(admin, passwords)
    ensure_topics(operator)
    grant_acls(admin, operator)


def provision_influxdb(operator: InfluxSettings, cfg: HealthpipeConfig, token_file: Callable[[Role], Path]) -> None:
    """One InfluxDB token per role with only its permissions, written to `token_file(role)` (mode 600). A token on
    file is kept if InfluxDB still knows it, else replaced (a wiped InfluxDB volume beside kept secrets)."""
    from influxdb_client import InfluxDBClient, Permission, PermissionResource

    with InfluxDBClient(**operator.client_kwargs()) as client:
        org = client.organizations_api().find_organizations(org=cfg.load.influxdb.org)[0]
        buckets = {b.name: b.id for b in client.buckets_api().find_buckets(org=org.name, limit=100).buckets}
        known = {a.token for a in client.authorizations_api().find_authorizations()}
        for role in ROLES:
            path, grants = token_file(role), influx_grants(cfg, role)
            if not grants or (path.exists() and path.read_text().strip() in known):
                continue
            permissions = []
            for g in grants:
                if g.bucket is not None and g.bucket not in buckets:  # a warm bucket tiers apply makes later
                    buckets[g.bucket] = client.buckets_api().create_bucket(bucket_name=g.bucket, org=org.name).id
                # the org itself is the resource `orgs/<id>` (an org-scoped `orgs` right would be orgs inside it)
                ident = buckets[g.bucket] if g.bucket else org.id if g.resource == "orgs" else None
                resource = PermissionResource(type=g.resource, org_id=None if g.resource == "orgs" else org.id,
                                              id=ident)
                permissions.append(Permission(action=g.action, resource=resource))
            auth = client.authorizations_api().create_authorization(org_id=org.id, permissions=permissions)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(auth.token)
