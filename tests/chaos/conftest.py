"""Chaos scenarios run against the native stack: they stop, kill and restart its real processes.

Each run records its outcomes in tests/chaos/results.json and regenerates the results table of
docs/reliability.md (tests/chaos/report.py): the documented last result is what the suite last measured."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime

import pytest

from tests.chaos import report

_outcomes: dict[str, dict] = {}


@pytest.fixture
def native(services):
    if not services.native:
        pytest.skip("chaos scenarios need the native stack (they stop and restart its processes)")
    return services


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    rep = outcome.get_result()
    if "tests/chaos/" not in str(item.fspath).replace("\\", "/"):
        return
    name = item.nodeid.split("::", 1)[1]
    when = datetime.fromtimestamp(time.time(), UTC).strftime("%Y-%m-%d %H:%M")
    if rep.when == "setup" and rep.skipped:
        _outcomes[name] = {"outcome": "skipped", "seconds": 0.0, "when": when}
    elif rep.when == "call":
        _outcomes[name] = {"outcome": "passed" if rep.passed else ("skipped" if rep.skipped else "FAILED"),
                           "seconds": rep.duration, "when": when}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _outcomes:
        return
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=report.ROOT).stdout.strip() or "-"
    except OSError:
        commit = "-"
    results = report.load()
    for name, r in _outcomes.items():
        results[name] = {**r, "commit": commit}
    report.RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    report.write_doc(results)
