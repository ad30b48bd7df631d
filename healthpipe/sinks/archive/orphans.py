"""Orphan files of the Iceberg cold tier: files under the table's folder that no snapshot and no kept metadata file
reaches, found by listing the folder and deleted (`healthpipe archive remove-orphans`).

Where they come from: an archiver killed after writing a range's file and before its commit (the restart writes
the range again, under another name when the range ends elsewhere); a compaction killed before its commit; a kill
between an expiry's commit and the deletion of the files only the expired snapshots reached (expire.py). None of
them is ever read: a cost in bytes only.

Why a file must be old before it goes: between its write and its commit, every file the archiver or a compaction
is about to commit is unreferenced too. So only files last modified more than `older_than` ago are removed (3 days
by default, as Iceberg's own remove_orphan_files; never under MIN_OLDER_THAN), and the folder is listed before the
table is read, so a file committed meanwhile counts as reached.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from healthpipe.common.errors import Fatal
from healthpipe.sinks.archive.expire import Reach
from healthpipe.sinks.archive.iceberg import IcebergTable

log = logging.getLogger(__name__)
DEFAULT_OLDER_THAN = 3 * 86400.0
MIN_OLDER_THAN = 3600.0  # far above a commit's write-to-commit time (seconds; a compaction's: minutes)


@dataclass
class Orphans:
    files: list[str] = field(default_factory=list)  # relative to the archive's root
    bytes: int = 0
    deleted: bool = False
    older_than_s: float = DEFAULT_OLDER_THAN


def find(iceberg: IcebergTable, older_than_s: float, now: float | None = None) -> Orphans:
    """The table folder's files that nothing the table keeps reaches, last modified over `older_than_s` ago."""
    listed = iceberg.store.list_dated(iceberg.rel)  # first: a file committed after this is reached below
    table = iceberg.table(refresh=True)
    if table.location().rstrip("/") != iceberg.location:
        # every file under our folder would look unreached: refuse rather than delete a live table's files
        raise Fatal(f"the table lives at {table.location()}, not under {iceberg.location}: not looking for orphans")
    metadata = table.metadata
    reached = iceberg.call("reading the manifests", Reach().files, table, list(metadata.snapshots))
    reached.add(table.metadata_location)
    reached.update(entry.metadata_file for entry in metadata.metadata_log)
    prefix = iceberg.uri("") + "/"
    reached_rel = {path[len(prefix):] for path in reached if path.startswith(prefix)}
    cutoff = (time.time() if now is None else now) - older_than_s
    found = Orphans(older_than_s=older_than_s)
    for rel, size, modified in sorted(listed):
        if rel not in reached_rel and modified < cutoff:
            found.files.append(rel)
            found.bytes += size
    return found


def remove_orphans(iceberg: IcebergTable, older_than_s: float = DEFAULT_OLDER_THAN, dry_run: bool = False,
                   now: float | None = None) -> Orphans:
    """Find the orphans and (unless `dry_run`) delete them."""
    if older_than_s < MIN_OLDER_THAN:
        raise ValueError(f"older than {older_than_s:g} s: at least {MIN_OLDER_THAN:g} s, or a file an archiver or a "
                         "compaction is about to commit could go")
    found = find(iceberg, older_than_s, now)
    if not dry_run:
        for rel in found.files:
            iceberg.store.delete(rel)
        found.deleted = True
    log.info("archive_orphans files=%d bytes=%d deleted=%s", len(found.files), found.bytes, found.deleted)
    return found
