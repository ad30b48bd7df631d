"""Where the archive puts things: hive-partitioned Parquet files named by the Kafka offsets they hold.

    date=2026-11-25/hour=10/health-metrics+3+00000000000000001000+00000000000000001999.parquet
    _ranges/health-metrics/3/00000000000000001000-00000000000000001999.json      (the intent of a range)

A file's name is (topic, partition, first offset, last offset) of the records it came from, so re-archiving the
same records gives the same name. A range of offsets becomes one file per hour its samples fall in; before any
of them is written, the range's intent (its files and row count) is recorded under `_ranges/`, which readers
skip (pyarrow and DuckDB ignore paths starting with `_`). After a crash the intent says exactly which range to
cut again, and which files to replace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

_FILE = re.compile(r"^(?P<topic>[A-Za-z0-9._-]+)\+(?P<partition>\d+)\+(?P<first>\d{20})\+(?P<last>\d{20})\.parquet$")
_HOUR = re.compile(r"date=(?P<date>\d{4}-\d{2}-\d{2})/hour=(?P<hour>\d{2})$")
RANGES = "_ranges"
HOUR_MS = 3_600_000


@dataclass(frozen=True, order=True)
class FileKey:
    hour_ms: int
    topic: str
    partition: int
    first: int
    last: int

    @property
    def path(self) -> str:
        return f"{hour_dir(self.hour_ms)}/{file_name(self.topic, self.partition, self.first, self.last)}"


def file_name(topic: str, partition: int, first: int, last: int) -> str:
    return f"{topic}+{partition}+{first:020d}+{last:020d}.parquet"


def hour_dir(hour_ms: int) -> str:
    t = datetime.fromtimestamp(hour_ms / 1000, UTC)
    return f"date={t:%Y-%m-%d}/hour={t:%H}"


def marker_path(topic: str, partition: int, first: int, last: int) -> str:
    return f"{RANGES}/{topic}/{partition}/{first:020d}-{last:020d}.json"


def markers_dir(topic: str, partition: int) -> str:
    return f"{RANGES}/{topic}/{partition}"


def parse_marker(name: str) -> tuple[int, int] | None:
    """(first, last) from a marker's file name."""
    m = re.match(r"^(\d{20})-(\d{20})\.json$", name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def parse(path: str) -> FileKey | None:
    """The key of an archive file from its path (relative to the archive root), or None if it is not one."""
    folder, _, name = path.rpartition("/")
    m, h = _FILE.match(name), _HOUR.search(folder)
    if not (m and h):
        return None
    hour = datetime.strptime(f"{h['date']} {h['hour']}", "%Y-%m-%d %H").replace(tzinfo=UTC)
    return FileKey(int(hour.timestamp() * 1000), m["topic"], int(m["partition"]), int(m["first"]), int(m["last"]))
