"""The cold tier as an Apache Iceberg table (`archive.format: iceberg`), through pyiceberg.

    <archive.target or s3://bucket/prefix>/<namespace>/<table>/
        data/ts_day=2026-12-05/health-metrics+3+00000000000000001000+00000000000000001999.parquet
        data/ts_day=2026-12-05/compacted-<uuid>-0.parquet
        metadata/...                      (Iceberg's: metadata.json, manifest lists, manifests)

The archiver writes its own Parquet files (files.py: the archive's encodings, which pyiceberg's writer cannot
choose) and adds them in **one snapshot per commit**, whose summary records, per consumer group, the next Kafka
offset of every partition the table holds (`healthpipe.offsets.<group>` = {"topic/partition": offset}), the way
Iceberg's Kafka Connect sink does. That summary, not the group's committed offsets, is the truth: an archiver
that starts reads it and skips whatever the table already holds, so a crash between the snapshot commit and the
offset commit neither loses nor repeats a row. Every snapshot healthpipe commits (compaction too) carries the
offsets forward. Readers see whole snapshots only.

Writers race through the catalog's optimistic commit (the metadata pointer swaps only if nobody swapped it
first); a lost race (CommitFailedException) refreshes the table and tries again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from healthpipe.common.config import ArchiveSettings
from healthpipe.common.errors import Fatal, SinkUnavailable
from healthpipe.sinks.archive.store import Store

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog import Catalog
    from pyiceberg.manifest import DataFile
    from pyiceberg.table import Table

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
OFFSETS_PREFIX = "healthpipe.offsets."
COMMIT_ATTEMPTS = 10  # lost races in a row before the commit is given up (and retried by the caller)
# Each commit writes a new metadata file and a manifest: without these both pile up for ever (a commit every few
# seconds at high rates). Old metadata files go after each commit (the newest 20 stay, for readers holding one);
# manifests are merged once 100 accumulate. Snapshots themselves: expire.py.
BOUNDED_METADATA = {"write.metadata.delete-after-commit.enabled": "true", "write.metadata.previous-versions-max": "20",
                    "commit.manifest-merge.enabled": "true"}
TopicPartitionOffsets = dict[tuple[str, int], int]


def schema() -> Any:
    """The table's columns: the hive layout's, with ts in microseconds (Iceberg's timestamptz)."""
    from pyiceberg.schema import Schema
    from pyiceberg.types import DoubleType, MapType, NestedField, StringType, TimestamptzType

    return Schema(
        NestedField(1, "ts", TimestamptzType(), required=False),
        NestedField(2, "value", DoubleType(), required=False),
        NestedField(3, "metric", StringType(), required=False),
        NestedField(4, "query", StringType(), required=False),
        NestedField(5, "metric_type", StringType(), required=False),
        NestedField(6, "series", StringType(), required=False),
        NestedField(7, "labels", MapType(8, StringType(), 9, StringType(), value_required=False), required=False),
    )


def day_dir(day_ms: int) -> str:
    return f"ts_day={datetime.fromtimestamp(day_ms / 1000, UTC):%Y-%m-%d}"


@dataclass(frozen=True)
class RangeFiles:
    """A sealed range of one Kafka partition and the files it became (paths relative to the store's root)."""

    key: tuple[str, int]
    first: int
    last: int
    files: list[str]


@dataclass(frozen=True)
class Partition:
    """One day of the table as the current (or a given) snapshot sees it."""

    day: str  # ts_day=YYYY-MM-DD
    files: list[DataFile]

    @property
    def rows(self) -> int:
        return sum(f.record_count for f in self.files)

    @property
    def bytes(self) -> int:
        return sum(f.file_size_in_bytes for f in self.files)


class IcebergTable:
    """The archive's table: create or load it, commit files with their offsets, read it, replace files."""

    def __init__(self, settings: ArchiveSettings, store: Store):
        self.settings = settings
        self.store = store
        self.namespace, self.name = settings.iceberg.table.split(".")
        self.rel = f"{self.namespace}/{self.name}"  # the table's folder, relative to the store's root
        scheme = "s3://" if store.is_s3 else "file://"
        self.location = f"{scheme}{store.root}/{self.rel}"
        self._catalog: Catalog | None = None
        self._table: Table | None = None

    # --- opening ---------------------------------------------------------------------------------------------

    def _io_properties(self) -> dict[str, str]:
        props = {"py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO"}
        if self.store.is_s3:
            s3 = self.settings.s3
            props |= {"s3.region": s3.region, "s3.connect-timeout": "5", "s3.request-timeout": "30"}
            if s3.endpoint:
                props["s3.endpoint"] = s3.endpoint
            if s3.access_key.get_secret_value():
                props["s3.access-key-id"] = s3.access_key.get_secret_value()
                props["s3.secret-access-key"] = s3.secret_key.get_secret_value()
        return props

    def catalog_uri(self) -> str:
        ice = self.settings.iceberg
        if ice.catalog_uri:
            return ice.catalog_uri
        folder = Path("data") if self.store.is_s3 else Path(self.store.root)
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(folder / 'iceberg-catalog.db').resolve()}"

    def catalog(self) -> Catalog:
        if self._catalog is None:
            ice = self.settings.iceberg
            props = self._io_properties() | {"uri": self.catalog_uri(), "warehouse": self.uri("")}
            try:
                if ice.catalog == "rest":
                    from pyiceberg.catalog.rest import RestCatalog

                    if ice.catalog_token.get_secret_value():
                        props["token"] = ice.catalog_token.get_secret_value()
                    self._catalog = RestCatalog("healthpipe", **props)
                else:
                    from pyiceberg.catalog.sql import SqlCatalog

                    self._catalog = SqlCatalog("healthpipe", **props)
            except Exception as exc:  # noqa: BLE001 (any failure to reach the catalog: named, retried)
                raise SinkUnavailable(f"the Iceberg catalog ({ice.catalog}) cannot be opened: "
                                      f"{type(exc).__name__}: {str(exc)[:300]}") from None
        return self._catalog

    def table(self, refresh: bool = False) -> Table:
        """The table, created on first use (partitioned by day(ts), sorted by series, ts)."""
        if self._table is not None:
            if refresh:
                self.call("refreshing the table", self._table.refresh)
            return self._table
        from pyiceberg.partitioning import PartitionField, PartitionSpec
        from pyiceberg.table.sorting import SortField, SortOrder
        from pyiceberg.transforms import DayTransform, IdentityTransform

        catalog = self.catalog()

        def create() -> Table:
            from pyiceberg.exceptions import NoSuchTableError, TableAlreadyExistsError

            # load first: create_table writes the table's first metadata file before it asks the catalog, so
            # create_table_if_not_exists on a table that exists leaves a file no one reaches at every open
            try:
                return catalog.load_table(self.settings.iceberg.table)
            except NoSuchTableError:
                pass
            catalog.create_namespace_if_not_exists(self.namespace)
            try:
                return made()
            except TableAlreadyExistsError:  # another process made it first (its file is the loser's orphan)
                return catalog.load_table(self.settings.iceberg.table)

        def made() -> Table:
            return catalog.create_table(
                self.settings.iceberg.table, schema(), location=self.location,
                partition_spec=PartitionSpec(PartitionField(1, 1000, DayTransform(), "ts_day")),
                sort_order=SortOrder(SortField(6, IdentityTransform()), SortField(1, IdentityTransform())),
                # the archiver writes Parquet itself (files.py); these are for writers that use pyiceberg's
                properties={"write.parquet.compression-codec": "zstd", "format-version": "2",
                            # the files carry no min/max for label keys and values (files.py: too dear to write),
                            # so the table keeps none either
                            "write.metadata.metrics.column.labels.key": "none",
                            "write.metadata.metrics.column.labels.value": "none", **BOUNDED_METADATA})

        table = self.call("opening the table", create)
        if any(table.properties.get(k) != v for k, v in BOUNDED_METADATA.items()):  # a table made before them
            from pyiceberg.exceptions import CommitFailedException

            def bound() -> None:
                with table.transaction() as tx:
                    tx.set_properties(BOUNDED_METADATA)

            try:
                self.call("setting the table's metadata bounds", bound)
            except CommitFailedException:  # another writer committed first; the next open sets them
                log.info("archive_table_properties_raced")
        self._table = table
        return self._table

    def call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a catalog or FileIO call; errors become SinkUnavailable (retry) or Fatal (configuration)."""
        from pyiceberg.exceptions import CommitFailedException, ForbiddenError, UnauthorizedError

        try:
            return fn(*args, **kwargs)
        except CommitFailedException:
            raise
        except (ForbiddenError, UnauthorizedError) as exc:
            raise Fatal(f"the Iceberg catalog refused {what}: {exc}") from None
        except Fatal:
            raise
        except Exception as exc:  # noqa: BLE001 (store down, catalog down, database locked: all retried)
            text = f"{type(exc).__name__}: {str(exc)[:300]}"
            if any(code in text for code in ("AccessDenied", "ACCESS_DENIED", "InvalidAccessKeyId", "NoSuchBucket")):
                raise Fatal(f"archive store {self.store.describe} refused {what}: {text}") from None
            raise SinkUnavailable(f"Iceberg table {self.settings.iceberg.table} unavailable ({what}): {text}") \
                from None

    # --- offsets ---------------------------------------------------------------------------------------------

    def offsets(self, group: str, snapshot_id: int | None = None) -> TopicPartitionOffsets:
        """Per (topic, partition), the next offset the table holds for `group`: from the newest snapshot (or
        `snapshot_id`'s) back to the first that records them (a snapshot committed by another tool may not)."""
        table = self.table()
        snapshot = table.snapshot_by_id(snapshot_id) if snapshot_id is not None else table.current_snapshot()
        while snapshot is not None:
            text = snapshot.summary.additional_properties.get(OFFSETS_PREFIX + group) if snapshot.summary else None
            if text is not None:
                return {_key(tp): int(o) for tp, o in orjson.loads(text).items()}
            parent = snapshot.parent_snapshot_id
            snapshot = table.snapshot_by_id(parent) if parent is not None else None
        return {}

    def _carried(self, table: Table) -> dict[str, str]:
        """The offsets every group recorded in the current snapshot: each new snapshot carries them forward."""
        snapshot = table.current_snapshot()
        if snapshot is None or snapshot.summary is None:
            return {}
        return {k: v for k, v in snapshot.summary.additional_properties.items() if k.startswith(OFFSETS_PREFIX)}

    # --- commits ---------------------------------------------------------------------------------------------

    def uri(self, rel: str) -> str:
        """A path relative to the store's root as the table's FileIO names it."""
        return f"{'s3://' if self.store.is_s3 else 'file://'}{self.store.root}/{rel}".rstrip("/")

    def append(self, group: str, ranges: list[RangeFiles]) -> int | None:
        """Add the ranges' files (relative to the store's root, already written) in one snapshot that records their
        ends as the group's offsets. A range the table already holds (an earlier attempt's commit went through, or
        another archiver took the partition over and got further) is left out: never a row twice. Returns the
        snapshot id, or None if nothing was left to commit."""
        from pyiceberg.exceptions import CommitFailedException

        for attempt in range(COMMIT_ATTEMPTS):
            table = self.table(refresh=True)
            held = self.offsets(group)
            fresh = []
            for r in ranges:
                if held.get(r.key, -1) > r.first:
                    log.log(logging.INFO if held[r.key] > r.last else logging.ERROR,
                            "archive_range_already_in_table partition=%s/%d range=%d-%d table_next=%d", *r.key,
                            r.first, r.last, held[r.key])
                    continue
                fresh.append(r)
            if not fresh:
                return None
            offsets = dict(held)
            for r in fresh:
                offsets[r.key] = max(offsets.get(r.key, 0), r.last + 1)
            properties = self._carried(table) | {OFFSETS_PREFIX + group: _text(offsets)}
            try:
                paths = [self.uri(f) for r in fresh for f in r.files]
                # no check_duplicate_files: it opens every data manifest of the table at every commit (a cost that
                # grows with the table); the offsets above already leave out a range, so a file, the table holds
                self.call("committing a snapshot", table.add_files, paths, snapshot_properties=properties,
                          check_duplicate_files=False)
            except CommitFailedException as exc:
                log.info("archive_commit_raced attempt=%d error=%s", attempt + 1, exc)
                time.sleep(0.05 * (attempt + 1))
                continue
            snapshot = table.current_snapshot()
            return snapshot.snapshot_id if snapshot else None
        raise SinkUnavailable(f"Iceberg table {self.settings.iceberg.table}: {COMMIT_ATTEMPTS} commits in a row "
                              f"lost the race to other writers")

    def replace(self, old: list[DataFile], new: list[str], properties: dict[str, str]) -> int | None:
        """One overwrite snapshot: `old` out, `new` (written, relative paths) in; offsets carried forward. None if
        another writer removed one of `old` first (someone else compacted): nothing is committed then."""
        from pyiceberg.exceptions import CommitFailedException
        from pyiceberg.io.pyarrow import parquet_file_to_data_file

        wanted = {f.file_path for f in old}
        for attempt in range(COMMIT_ATTEMPTS):
            table = self.table(refresh=True)
            current = {t.file.file_path: t.file for t in table.scan().plan_files()}
            if not wanted <= set(current):
                return None
            added = [self.call("reading a new file's footer", parquet_file_to_data_file, table.io,
                                table.metadata, self.uri(f)) for f in new]
            try:
                with table.transaction() as tx, \
                        tx.update_snapshot(snapshot_properties=self._carried(table) | properties).overwrite() as ow:
                    for f in old:
                        ow.delete_data_file(current[f.file_path])
                    for f in added:
                        ow.append_data_file(f)
            except CommitFailedException as exc:
                log.info("archive_compaction_raced attempt=%d error=%s", attempt + 1, exc)
                time.sleep(0.05 * (attempt + 1))
                continue
            except Exception as exc:  # noqa: BLE001
                raise SinkUnavailable(f"Iceberg table {self.settings.iceberg.table}: committing the compaction "
                                      f"failed: {type(exc).__name__}: {str(exc)[:300]}") from None
            snapshot = table.current_snapshot()
            return snapshot.snapshot_id if snapshot else None
        raise SinkUnavailable(f"Iceberg table {self.settings.iceberg.table}: {COMMIT_ATTEMPTS} compactions in a row "
                              f"lost the race to other writers")

    # --- reading ---------------------------------------------------------------------------------------------

    def partitions(self, snapshot_id: int | None = None) -> Iterator[Partition]:
        """The table's days, oldest first, with their files."""
        table = self.table(refresh=True)
        by_day: dict[str, list[DataFile]] = {}
        for task in table.scan(snapshot_id=snapshot_id).plan_files():
            day = task.file.file_path.rsplit("/", 2)[-2]
            by_day.setdefault(day, []).append(task.file)
        for day in sorted(by_day):
            yield Partition(day, sorted(by_day[day], key=lambda f: f.file_path))

    def read(self, columns: list[str], row_filter: Any = None, snapshot_id: int | None = None) -> pa.Table:
        from pyiceberg.expressions import AlwaysTrue

        table = self.table(refresh=True)
        scan = table.scan(row_filter=row_filter if row_filter is not None else AlwaysTrue(),
                          selected_fields=tuple(columns), snapshot_id=snapshot_id)
        return self.call("reading the table", scan.to_arrow)

    def snapshot_id(self) -> int | None:
        snapshot = self.table(refresh=True).current_snapshot()
        return snapshot.snapshot_id if snapshot else None


def _key(text: str) -> tuple[str, int]:
    topic, _, partition = text.rpartition("/")
    return topic, int(partition)


def _text(offsets: TopicPartitionOffsets) -> str:
    return orjson.dumps({f"{t}/{p}": o for (t, p), o in sorted(offsets.items())}).decode()
