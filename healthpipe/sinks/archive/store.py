"""The archive's target: a local directory or an S3-compatible bucket, through pyarrow.fs, with atomic puts.

A file becomes visible whole or not at all: on a filesystem it is written under a temporary name (`.tmp-*`,
which readers skip) and renamed; on S3 it is one PUT of the finished bytes (an object is visible only once
its upload completes). Errors are classified by the action they need: the store is down or slow → Retryable
(the consumer holds, commits nothing, retries); credentials or bucket refused → Fatal.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from pyarrow import fs as pafs

from healthpipe.common.config import ArchiveSettings
from healthpipe.common.errors import Fatal, SinkUnavailable

# AWS error codes Arrow puts in an OSError's text: only these mean "fix the configuration".
_FATAL_S3 = ("ACCESS_DENIED", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket",
             "NO_SUCH_BUCKET")


class Store:
    def __init__(self, settings: ArchiveSettings):
        self.settings = settings
        if settings.target == "s3":
            s3 = settings.s3
            self.fs: pafs.FileSystem = pafs.S3FileSystem(
                access_key=s3.access_key.get_secret_value() or None,
                secret_key=s3.secret_key.get_secret_value() or None,
                endpoint_override=s3.endpoint or None, region=s3.region, connect_timeout=5, request_timeout=30,
                tls_ca_file_path=str(s3.ca_file) if s3.ca_file else None,
                retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=2),
                # no multipart upload opened ahead: an object below the part size goes up in one PutObject
                allow_delayed_open=True, background_writes=False)
            self.root = "/".join(p for p in (s3.bucket, s3.prefix.strip("/")) if p)
            self.describe = f"s3://{self.root} at {s3.endpoint or 'AWS'}"
        else:
            self.fs = pafs.LocalFileSystem()
            self.root = str(Path(settings.target).resolve())
            self.describe = self.root
            os.makedirs(self.root, exist_ok=True)

    @property
    def is_s3(self) -> bool:
        return self.settings.target == "s3"

    def _path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def _fail(self, what: str, exc: OSError) -> Exception:
        text = str(exc)
        if any(code in text for code in _FATAL_S3):
            return Fatal(f"archive store {self.describe} refused {what}: {text[:300]}; check archive.s3 credentials "
                         f"and bucket")
        return SinkUnavailable(f"archive store {self.describe} unavailable ({what}): {text[:300]}")

    def check(self) -> None:
        """Retryable while the store cannot be reached; Fatal if it refuses us."""
        try:
            self.fs.get_file_info(self.root)
        except OSError as exc:
            raise self._fail("a listing", exc) from None

    def put(self, rel: str, data: bytes) -> None:
        """Write `data` at `rel`, atomically (see the module docstring)."""
        path = self._path(rel)
        try:
            if self.is_s3:
                with self.fs.open_output_stream(path) as out:
                    out.write(data)
                return
            folder, _, name = path.rpartition("/")
            self.fs.create_dir(folder, recursive=True)
            tmp = f"{folder}/.tmp-{uuid.uuid4().hex[:8]}-{name}"
            with self.fs.open_output_stream(tmp) as out:
                out.write(data)
                out.flush()
            with open(tmp, "rb+") as f:  # durable before it becomes visible
                os.fsync(f.fileno())
            self.fs.move(tmp, path)
        except OSError as exc:
            raise self._fail(f"writing {rel}", exc) from None

    def get(self, rel: str) -> bytes:
        try:
            with self.fs.open_input_stream(self._path(rel)) as f:
                return f.read()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise self._fail(f"reading {rel}", exc) from None

    def delete(self, rel: str) -> None:
        try:
            self.fs.delete_file(self._path(rel))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._fail(f"deleting {rel}", exc) from None

    def list_dated(self, rel: str = "", recursive: bool = True) -> list[tuple[str, int, float]]:
        """(path relative to the root, size, last modified as epoch seconds) of every file under `rel`; a file whose
        store does not say when counts as modified now (never old enough for remove-orphans)."""
        selector = pafs.FileSelector(self._path(rel), recursive=recursive, allow_not_found=True)
        try:
            infos = self.fs.get_file_info(selector)
        except OSError as exc:
            raise self._fail(f"listing {rel or '/'}", exc) from None
        prefix = self.root + "/"
        return [(i.path[len(prefix):], i.size or 0, i.mtime.timestamp() if i.mtime else time.time())
                for i in infos if i.type == pafs.FileType.File]

    def list(self, rel: str = "", recursive: bool = True) -> list[tuple[str, int]]:
        """(path relative to the root, size) of every file under `rel`; [] if there is nothing there."""
        return [(path, size) for path, size, _ in self.list_dated(rel, recursive)]
