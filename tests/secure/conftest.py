"""The secured native stack (`make test-secure`: `healthpipe stack up --secure`): Kafka over SASL_SSL with ACLs,
InfluxDB over https, a principal and a token per role.

Each test gets topic and group names of its own; `secured` grants every role its ACLs on them (as the stack does
for the pipeline's names), and `as_role` turns the operator's config into one role's: its principal, its password
file, its InfluxDB token. Nothing here bypasses the security: the tests connect as the processes do.
"""

from __future__ import annotations

import os

import pytest
from confluent_kafka.admin import AdminClient

from healthpipe.common.config import HealthpipeConfig
from healthpipe.common.kafka import ensure_topics
from healthpipe.ops.stack import security


@pytest.fixture(scope="session")
def secure_stack(services):
    if not security.is_secure() or services.kafka_security.get("protocol") != "SASL_SSL":
        why = "the native stack is not secured: run `make stack-up SECURE=1` (make test-secure does)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {why}", pytrace=False)
        pytest.skip(why)
    return services


def admin(cfg: HealthpipeConfig) -> AdminClient:
    """The operator's admin client (hp-admin, the stack's one super user)."""
    return AdminClient(cfg.kafka.as_librdkafka_dict())


@pytest.fixture
def secured(secure_stack):
    """An operator's config with fresh names: the topics created and every role granted its ACLs on them."""

    def make(**overrides) -> HealthpipeConfig:
        cfg = secure_stack.config(**overrides)
        ensure_topics(cfg)
        security.grant_acls(admin(cfg), cfg)
        return cfg

    return make
