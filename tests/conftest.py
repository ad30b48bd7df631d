"""Markers by folder (tests/unit → unit, tests/integration → integration, tests/chaos → chaos, ...) and the
`services` fixture: the real Kafka, Prometheus and InfluxDB every non-unit test runs against."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.services import Services, discover

pytest_plugins = ["tests.support.ci_skips", "pytester"]

_BY_FOLDER = {"unit": pytest.mark.unit, "integration": pytest.mark.integration, "chaos": pytest.mark.chaos,
              "cluster": pytest.mark.cluster, "docker": pytest.mark.docker,
              "compose": pytest.mark.compose, "secure": pytest.mark.secure}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        if folder in _BY_FOLDER:
            item.add_marker(_BY_FOLDER[folder])
        elif not any(item.get_closest_marker(name) for name in _BY_FOLDER):
            item.add_marker(pytest.mark.unit)  # e.g. tests/test_simple_etl.py: fast, no services


@pytest.fixture(autouse=True)
def hermetic_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No HEALTHPIPE_* variable of the caller's shell reaches the code under test (a sourced .stack/stack.env
    would override the test's own config: a fault proxy's URL, a scratch bucket). Where the services are was
    read once, at import (tests.support.services.CALLER_ENV); each test sets what it needs."""
    for name in [k for k in os.environ if k.startswith("HEALTHPIPE_")]:
        monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def services() -> Services:
    found, why = discover()
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the real services are not reachable: {why}", pytrace=False)
        pytest.skip(why)
    yield found
    found.close()


@pytest.fixture
def config(services: Services):
    """A config with fresh topic and group names, against the real services."""
    return services.config()
