"""`make up` / `make down` where a Docker engine runs: docker compose with the checkout's docker-compose.yml."""

from __future__ import annotations

import secrets
import shutil
import subprocess

from healthpipe.ops.stack.paths import ROOT


def docker_engine_runs() -> bool:
    return bool(shutil.which("docker")) and subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def env_from_example(example: str) -> str:
    """.env from .env.example: every `generate` becomes a fresh random secret, everything else is kept."""
    lines = []
    for line in example.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#") and value.strip() == "generate":
            # S3 access keys are identifiers (letters and digits), the rest may be any URL-safe text
            value = f"hp{secrets.token_hex(8)}" if key.endswith("ACCESS_KEY") else secrets.token_urlsafe(32)
            line = f"{key}={value}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def compose_up() -> int:
    env_file = ROOT / ".env"
    if not env_file.exists():
        env_file.write_text(env_from_example((ROOT / ".env.example").read_text()))
        env_file.chmod(0o600)
    return subprocess.run(["docker", "compose", "up", "-d", "--build"], cwd=ROOT).returncode


def compose_down() -> int:
    return subprocess.run(["docker", "compose", "down"], cwd=ROOT).returncode
