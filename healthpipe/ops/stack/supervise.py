"""Supervising the stack's processes: start one (prepare, spawn in its own session, wait until ready), stop it
(SIGTERM to its group, SIGKILL after a grace), kill it (-9, for the fault tests), and run an install script."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from healthpipe.common.errors import StackError
from healthpipe.ops.stack.paths import CACHE, ROOT, SCRIPTS, STACK_DIR


@dataclass
class Service:
    name: str
    command: Callable[[], list[str]]
    ready: Callable[[], bool]
    prepare: Callable[[], None] = lambda: None
    after_ready: Callable[[], None] = lambda: None
    start_timeout: float = 90.0
    env: Callable[[], dict[str, str]] = lambda: {}

    @property
    def pid_file(self) -> Path:
        return STACK_DIR / "pids" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return STACK_DIR / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited child not yet reaped) is not alive for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def secret_file(path: Path, make: Callable[[], str]) -> str:
    """A secret generated once per stack and kept in .stack/ (mode 600): nothing secret is ever committed."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def run_script(name: str, **env: str) -> None:
    """Run an install/build script; its full output goes to .stack/logs/<script>.log, its summary here."""
    log = STACK_DIR / "logs" / f"{name.removesuffix('.sh')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.Popen(["bash", str(SCRIPTS / name)], stdout=subprocess.PIPE, stderr=out, text=True,
                                env={**os.environ, **env, "HEALTHPIPE_CACHE": str(CACHE)})
        assert proc.stdout is not None
        for line in proc.stdout:  # the scripts' own progress lines ("building libflux ...")
            out.write(line)
            print(f"  {line.rstrip()}", flush=True)
    if proc.wait() != 0:
        raise StackError(f"{name} failed (exit {proc.returncode}); full log {log}:\n{_tail(log, 30)}")


def start(svc: Service, wait: bool = True) -> None:
    """Start `svc` unless it already runs; wait until it is ready (unless `wait` is false)."""
    if svc.pid() is not None and svc.ready():
        print(f"{svc.name}: already running (pid {svc.pid()})", flush=True)
        return
    if svc.pid() is not None:  # running but not ready: wait for it rather than starting a second copy
        _wait_ready(svc, time.monotonic())
        return
    svc.prepare()
    svc.pid_file.parent.mkdir(parents=True, exist_ok=True)
    svc.log_file.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with svc.log_file.open("ab") as log:
        # The services get a clean environment: a HEALTHPIPE_* variable exported in the caller's shell
        # must not reach (say) the demo app or the pipeline processes unless we put it there.
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHPIPE_")}
        proc = subprocess.Popen(svc.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=ROOT, start_new_session=True, env={**env, **svc.env()})
    svc.pid_file.write_text(str(proc.pid))
    if wait:
        _wait_ready(svc, t0)


def _wait_ready(svc: Service, t0: float) -> None:
    while not svc.ready():
        pid = svc.pid()
        if pid is None:
            raise StackError(f"{svc.name} exited during start-up; see {svc.log_file}:\n{_tail(svc.log_file)}")
        if time.monotonic() - t0 > svc.start_timeout:
            raise StackError(f"{svc.name} not ready after {svc.start_timeout:.0f}s; see {svc.log_file}:\n"
                             f"{_tail(svc.log_file)}")
        time.sleep(0.5)
    svc.after_ready()
    print(f"{svc.name}: ready in {time.monotonic() - t0:.1f}s (pid {svc.pid()}, log {svc.log_file})", flush=True)


def stop(svc: Service, grace: float = 30.0) -> None:
    """SIGTERM the process group we started, SIGKILL after `grace` seconds; forget its pid."""
    pid = svc.pid()
    if pid is not None:
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            _signal_group(pid, signal.SIGKILL)
        print(f"{svc.name}: stopped (pid {pid})", flush=True)
    svc.pid_file.unlink(missing_ok=True)


def kill(svc: Service) -> int | None:
    """SIGKILL the service's process group at once (a crash, not a shutdown); returns the pid killed."""
    pid = svc.pid()
    if pid is not None:
        _signal_group(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)
        print(f"{svc.name}: killed -9 (pid {pid})", flush=True)
    svc.pid_file.unlink(missing_ok=True)
    return pid


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)  # start_new_session made pid the group leader: children go too


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
