"""The rooms stay apart: the library (what the production image runs) never imports the operations tooling
in ops/ (native stack, CLI wiring, demo app), and common/ never imports upward into the services."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ["common", "producer", "consumer", "verify", "tiers", "archive", "healthpipe"]
SERVICES = {"producer", "consumer", "verify", "tiers", "archive", "healthpipe", "ops"}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", LIBRARY)
def test_the_library_never_imports_ops(package):
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / package).rglob("*.py") if "ops" in imported_packages(p)]
    assert offenders == []


def test_common_imports_no_service():
    offenders = {str(p.relative_to(ROOT)): sorted(imported_packages(p) & SERVICES)
                 for p in (ROOT / "common").rglob("*.py") if imported_packages(p) & SERVICES}
    assert offenders == {}
