"""tests/support/ci_skips.py: a skip fails the run under CI=true, and only there."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.unit

SKIPPING = """
import pytest

def test_needs_a_tool():
    pytest.skip("the tool is not installed")

@pytest.mark.xfail(reason="known")
def test_known_bug():
    assert False
"""


@pytest.mark.parametrize("ci, failed, skipped", [("true", 1, 0), ("", 0, 1)])
def test_a_skip_fails_under_ci_only(pytester, monkeypatch, ci, failed, skipped):
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makepyfile(SKIPPING)
    result = pytester.runpytest_subprocess("-p", "tests.support.ci_skips", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=failed, skipped=skipped, xfailed=1)
    if ci:
        result.stdout.fnmatch_lines(["*skipped under CI=true*the tool is not installed*"])
