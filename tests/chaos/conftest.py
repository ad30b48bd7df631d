"""Chaos scenarios run against the native stack: they stop, kill and restart its real processes."""

import pytest


@pytest.fixture
def native(services):
    if not services.native:
        pytest.skip("chaos scenarios need the native stack (they stop and restart its processes)")
    return services
