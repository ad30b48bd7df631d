"""How a `healthpipe` process ends: every entry (the console script the image runs, `python -m healthpipe`) goes
through cli.run, whose error exit skips the interpreter's teardown (librdkafka threads left open met a finalizing
interpreter: SIGSEGV instead of the exit code)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from healthpipe import cli

MISSING = "/nonexistent/healthpipe.yaml"


class Exited(Exception):
    def __init__(self, code: int):
        self.code = code


@pytest.fixture
def os_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    def record(code: int) -> None:
        raise Exited(code)

    monkeypatch.setattr(cli.os, "_exit", record)


def test_an_error_exit_skips_the_teardown(os_exit: None, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["healthpipe", "consumer", "--config", MISSING])
    with pytest.raises(Exited) as ended:
        cli.run()
    assert ended.value.code == 2
    assert MISSING in capsys.readouterr().err  # printed before the process ends


def test_a_clean_exit_is_an_ordinary_one(os_exit: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "main", lambda: 0)
    with pytest.raises(SystemExit) as ended:
        cli.run()
    assert ended.value.code == 0


def _console_script() -> str:
    found = shutil.which("healthpipe", path=str(Path(sys.executable).parent))
    assert found, "the console script is not installed beside this interpreter (pip install -e .)"
    return found


@pytest.mark.parametrize("entry", ["console script", "python -m healthpipe"])
def test_every_entry_exits_with_the_code_and_names_the_cause(entry: str) -> None:
    command = [_console_script()] if entry == "console script" else [sys.executable, "-m", "healthpipe"]
    done = subprocess.run([*command, "consumer", "--config", MISSING], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert MISSING in done.stderr


def test_the_console_script_enters_through_run() -> None:
    assert "from healthpipe.cli import run" in Path(_console_script()).read_text()
