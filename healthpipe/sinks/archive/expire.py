"""Bounded Iceberg metadata: the archiver expires old snapshots and deletes the files only they reached.

Every archiver commit is a snapshot, and every commit writes a metadata file listing all snapshots the table
keeps. Kept for ever, that list grows with the table's age (a commit every few seconds at high rates: tens of
thousands a day), and so does every commit's cost and the metadata files on the store. So the archiver keeps the
newest `archive.iceberg.keep_snapshots` (the current one always; tagged and branch heads too, as Iceberg says) and
expires the rest, at most every EVERY_SECONDS. The table itself also bounds its other metadata (iceberg.py's
table properties): old metadata files are deleted after each commit, and manifests are merged.

Files: Iceberg's expiry only drops snapshots from the metadata. The data files, manifests and manifest lists that
only expired snapshots reached (what `archive compact` replaced, mostly) are deleted after the expiry commits,
never before (a reader of a kept snapshot needs every file it reaches). A kill between the two leaves those files
unreferenced on the store, where no reader looks; they are not found again (the snapshots that named them are
gone): a cost in bytes, never in correctness.

What it means for `export --snapshot ID`: a training set is rebuilt bit-identically while its snapshot is among
the kept ones (at a commit every 5 minutes, 1,000 snapshots are ~3.5 days); after that `export` says the snapshot
was expired.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from healthpipe.sinks.archive.iceberg import IcebergTable

if TYPE_CHECKING:
    from pyiceberg.table import Table
    from pyiceberg.table.snapshots import Snapshot

log = logging.getLogger(__name__)
EVERY_SECONDS = 600  # the archiver expires at most this often


@dataclass
class Expiry:
    snapshots_expired: int
    snapshots_kept: int
    files_deleted: int


class Reach:
    """Which files snapshots reach. Manifest lists and manifests never change once written, so what each one
    names is remembered: an expiry every 10 minutes reads only the files written since the last."""

    def __init__(self) -> None:
        self.lists: dict[str, list[str]] = {}  # manifest list → its manifests
        self.manifests: dict[str, list[str]] = {}  # manifest → its data files

    def files(self, table: Table, snapshots: list[Snapshot]) -> set[str]:
        out: set[str] = set()
        for snapshot in snapshots:
            manifests = self.lists.get(snapshot.manifest_list)
            if manifests is None:
                found = snapshot.manifests(table.io)
                manifests = self.lists[snapshot.manifest_list] = [m.manifest_path for m in found]
                for m in found:
                    if m.manifest_path not in self.manifests:
                        # live entries only: a file a snapshot deleted (compaction's) is read by its parents alone
                        self.manifests[m.manifest_path] = [
                            e.data_file.file_path for e in m.fetch_manifest_entry(table.io, discard_deleted=True)]
            out.add(snapshot.manifest_list)
            for path in manifests:
                out.add(path)
                out.update(self.manifests[path])
        return out

    def forget_all_but(self, files: set[str]) -> None:
        self.lists = {k: v for k, v in self.lists.items() if k in files}
        self.manifests = {k: v for k, v in self.manifests.items() if k in files}


def expire(iceberg: IcebergTable, keep: int, reach: Reach | None = None) -> Expiry:
    """Expire all but the newest `keep` snapshots (never the current one, a tag's or a branch's), then delete the
    files only the expired ones reached."""
    reach = reach or Reach()
    table = iceberg.table(refresh=True)
    snapshots = sorted(table.metadata.snapshots, key=lambda s: (s.timestamp_ms, s.sequence_number or 0))
    protected = {ref.snapshot_id for ref in table.metadata.refs.values()}
    current = table.current_snapshot()
    if current is not None:
        protected.add(current.snapshot_id)
    newest = {s.snapshot_id for s in snapshots[-keep:]}
    doomed = [s for s in snapshots if s.snapshot_id not in newest | protected]
    if not doomed:
        return Expiry(0, len(snapshots), 0)
    from pyiceberg.exceptions import CommitFailedException

    before = iceberg.call("reading the manifests", reach.files, table, snapshots)
    try:
        iceberg.call("expiring snapshots", lambda: table.maintenance.expire_snapshots()
                     .by_ids([s.snapshot_id for s in doomed]).commit())
    except CommitFailedException as exc:  # another writer committed first: the next expiry tries again
        log.info("archive_expiry_raced error=%s", exc)
        return Expiry(0, len(snapshots), 0)
    # only now, with the expiry committed: the files no kept snapshot reaches (a writer committing meanwhile adds
    # files of its own, never one of an expired snapshot's)
    table = iceberg.table(refresh=True)
    after = iceberg.call("reading the manifests", reach.files, table, list(table.metadata.snapshots))
    gone = before - after
    prefix = iceberg.uri("") + "/"
    for path in sorted(gone):
        if path.startswith(prefix):  # the table's own files only: a file added from elsewhere is not ours
            iceberg.store.delete(path[len(prefix):])
    reach.forget_all_but(after)
    kept = len(table.metadata.snapshots)
    log.info("archive_snapshots_expired expired=%d kept=%d files_deleted=%d", len(doomed), kept, len(gone))
    return Expiry(len(doomed), kept, len(gone))


class Expirer:
    """The archiver's periodic expiry: after a commit, at most every EVERY_SECONDS."""

    def __init__(self, iceberg: IcebergTable, keep: int, clock=time.monotonic):
        self.iceberg, self.keep, self.clock = iceberg, keep, clock
        self.reach = Reach()
        self.last: float | None = None

    def after_commit(self) -> Expiry | None:
        now = self.clock()
        if self.last is not None and now - self.last < EVERY_SECONDS:
            return None
        self.last = now
        return expire(self.iceberg, self.keep, self.reach)
