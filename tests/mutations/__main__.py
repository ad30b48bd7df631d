"""Run the mutants of tests/mutations/mutants.py: each must be killed (its tests must fail).

    python -m tests.mutations [--stage unit|integration|chaos|cluster|docker|compose|secure ...] [NAME ...]

Each mutant is applied to a copy of the checkout (git's files, untracked ones too, plus the built C extension,
with .stack/ linked so the copy's tests reach the same native stack), and its tests run there with the copy first
on PYTHONPATH (so processes the tests start run the mutated code too). Killed: pytest exits 1 (tests failed).
Survived: they passed. Broken: any other exit (collection error, nothing ran), which is a defect of the mutant.
Exit 0 only when every selected mutant was killed. CI runs each stage once its stack is up (.ci/run). """

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.mutations.mutants import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parents[2]


def copy_checkout(into: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    for built in (ROOT / "healthpipe").rglob("*.so"):  # the compiled fast path, as `make install` built it
        shutil.copy2(built, into / built.relative_to(ROOT))
    if (ROOT / ".stack").exists():
        (into / ".stack").symlink_to(ROOT / ".stack")


def apply(mutant: Mutant, tree: Path) -> None:
    for path, old, new in mutant.edits:
        target = tree / path
        text = target.read_text()
        if text.count(old) != 1:
            raise SystemExit(f"mutant {mutant.name}: {path} holds its text {text.count(old)} times, not once")
        target.write_text(text.replace(old, new))


def run(mutant: Mutant) -> tuple[str, float, str]:
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-") as tmp:
        tree = Path(tmp)
        copy_checkout(tree)
        apply(mutant, tree)
        paths = [str(tree)] + ([str(tree / mutant.pythonpath)] if mutant.pythonpath else [])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths),
               # a service a test restarts must keep its data under the real .stack/, not under the copy's link
               # to it: the copy is deleted after the run (a broker's log.dirs through it died with it)
               "HEALTHPIPE_STACK_DIR": str((ROOT / ".stack").resolve())}
        env.pop("CI", None)  # a skip must not count as a kill: under CI=true it would be a failure
        t0 = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-rf", "-p", "no:cacheprovider",
                               "-m", "unit or integration or chaos or cluster or docker or compose or secure",
                               *mutant.tests],
                              cwd=tree, env=env, capture_output=True, text=True)
        seconds = time.monotonic() - t0
        lines = done.stdout.strip().splitlines() or [""]
        failed = [line[:160] for line in lines if line.startswith("FAILED ")]
        last = " | ".join([lines[-1], *failed[:1]])  # the count, and what failed first (the reason it was killed)
        outcome = {0: "SURVIVED", 1: "killed"}.get(done.returncode, f"BROKEN (pytest exit {done.returncode})")
        if "skipped" in lines[-1] and " failed" not in lines[-1] and " passed" not in lines[-1]:
            outcome = "BROKEN (skipped: is the stack up?)"
        return outcome, seconds, last


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutations", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", action="append",
                        choices=["unit", "integration", "chaos", "cluster", "docker", "compose", "secure"],
                        help="only the mutants whose tests need this stack (repeatable; default: all)")
    parser.add_argument("names", nargs="*", help="only these mutants")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS
              if (not args.stage or m.stage in args.stage) and (not args.names or m.name in args.names)]
    if not chosen:
        print("no mutant selected", file=sys.stderr)
        return 2
    failures = 0
    for mutant in chosen:
        outcome, seconds, last = run(mutant)
        failures += outcome != "killed"
        print(f"{outcome:<10} {mutant.name:<40} {seconds:6.1f}s  {last}", flush=True)
    print(f"mutants: {len(chosen) - failures} killed, {failures} not killed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
