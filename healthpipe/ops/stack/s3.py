"""The S3 server (SeaweedFS `weed mini`) on the native stack, on request (`stack up --with s3`): the archive's
tests write Parquet to it."""

from __future__ import annotations

import secrets
from pathlib import Path

import requests

from healthpipe.ops.stack.paths import CACHE, PORTS, S3_BUCKET, SEAWEEDFS_VERSION, STACK_DIR
from healthpipe.ops.stack.supervise import Service, run_script, secret_file


def _s3_dir() -> Path:
    return STACK_DIR / "s3"


def s3_credentials() -> tuple[str, str]:
    access = secret_file(_s3_dir() / "access_key", lambda: "hp" + secrets.token_hex(8))
    secret = secret_file(_s3_dir() / "secret_key", lambda: secrets.token_urlsafe(24))
    return access, secret


def _s3_prepare() -> None:
    run_script("build-seaweedfs.sh", SEAWEEDFS_VERSION=SEAWEEDFS_VERSION)
    (_s3_dir() / "data").mkdir(parents=True, exist_ok=True)


def _s3_command() -> list[str]:
    return [str(CACHE / f"seaweedfs-{SEAWEEDFS_VERSION}" / "weed"), "mini", f"-dir={_s3_dir() / 'data'}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.port={PORTS.s3}", f"-bucket={S3_BUCKET}"]


def _s3_env() -> dict[str, str]:
    # `weed mini` takes its S3 identity from these (anonymous writes would be stored aws-chunked: corrupt).
    access, secret = s3_credentials()
    return {"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret}


def _s3_ready() -> bool:
    try:
        # Any HTTP answer (403 without a signature) means the S3 gateway listens.
        return requests.get(f"http://127.0.0.1:{PORTS.s3}/", timeout=2).status_code < 500
    except requests.RequestException:
        return False


S3 = Service("s3", command=_s3_command, ready=_s3_ready, prepare=_s3_prepare, env=_s3_env, start_timeout=120)
