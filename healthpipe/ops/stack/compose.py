"""`make up` / `make down` where a Docker engine runs: docker compose with the checkout's docker-compose.yml."""

from __future__ import annotations

import secrets
import shutil
import subprocess

from healthpipe.ops.stack.paths import ROOT


def docker_engine_runs() -> bool:
    return bool(shutil.which("docker")) and subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def compose_up() -> int:
    env_file = ROOT / ".env"
    if not env_file.exists():
        env_file.write_text(f"INFLUXDB_TOKEN={secrets.token_urlsafe(32)}\nS3_ACCESS_KEY=hp{secrets.token_hex(8)}\n"
                            f"S3_SECRET_KEY={secrets.token_urlsafe(24)}\n")
        env_file.chmod(0o600)
    return subprocess.run(["docker", "compose", "up", "-d", "--build"], cwd=ROOT).returncode


def compose_down() -> int:
    return subprocess.run(["docker", "compose", "down"], cwd=ROOT).returncode
