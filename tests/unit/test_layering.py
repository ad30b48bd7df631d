"""The rooms stay apart, as docs/architecture.md says: import-linter's contracts (pyproject.toml) hold, no package
imports another's private module, and the architecture document names every package of the tree."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "healthpipe"


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for each absolute `from healthpipe... import ...` and `import healthpipe...` of a file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("healthpipe"):
            out.append((node.module or "", [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("healthpipe")]
    return out


def _package_of(module: str) -> str:
    """healthpipe.sinks.influx.loader → healthpipe.sinks.influx; healthpipe.common.kafka → healthpipe.common."""
    parts = module.split(".")
    return ".".join(parts[:3] if len(parts) > 2 and parts[1] == "sinks" else parts[:2])


def test_the_import_contracts_hold():
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    done = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_no_package_imports_another_packages_private_names():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        here = _package_of(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for module, names in _imports(path):
            if _package_of(module) == here:
                continue
            private = [p for p in module.split(".") if p.startswith("_")] + [
                n for n in names if n.startswith("_") and not n.endswith("__")]  # __version__ is public
            if private:
                offenders.append(f"{path.relative_to(ROOT)}: from {module} import {', '.join(names)}")
    assert offenders == []


def test_the_wheel_holds_one_top_level_package_and_the_fast_path(tmp_path):
    """What `pip install .` installs: the healthpipe package (C fast path included where a compiler is, as in CI)
    and its metadata, nothing else at the top level: no `consumer`, `common`, ... for other code to collide with."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("healthpipe-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {x for x in top if not x.endswith(".dist-info")} == {"healthpipe"}, top
    assert len(top) == 2, top  # and its .dist-info
    if shutil.which("cc") or os.environ.get("CI") == "true":
        assert any(n.startswith("healthpipe/schema/_fastline") and n.endswith(".so") for n in names), names


def test_the_architecture_document_names_every_package():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    packages = sorted(str(p.parent.relative_to(ROOT)) for p in PACKAGE.rglob("__init__.py"))
    missing = [p for p in packages if f"`{p}/`" not in doc]
    assert missing == [], f"docs/architecture.md does not name {missing}"
    named = set(re.findall(r"`(healthpipe/[\w/]+?)/?`", doc))
    gone = sorted(n for n in named if not (ROOT / n).exists() and not (ROOT / f"{n}.py").exists())
    assert gone == [], f"docs/architecture.md names what the tree does not have: {gone}"
