"""`healthpipe export`: a training data set on disk, across the tiers, with its manifest and completeness.

    DIR/data/date=YYYY-MM-DD/part-NNNNN.parquet   (or .csv; hive-partitioned by date)
    DIR/manifest.json                              command, queries, range, step, as-of, tiers used, rows,
                                                   SHA-256 of every file, healthpipe version
    DIR/completeness.csv                           per series: expected grid points, present, longest gap
    DIR/completeness.png                           series × time heatmap of coverage

Everything is written under a temporary directory next to DIR and renamed into place at the end: an export
that fails or is interrupted leaves no DIR that looks complete. Memory is bounded by two frames (one written while
the next is read; ~100,000 rows each, healthpipe.ml.data.FRAME_ROWS, each series whole in one; glibc is asked to give
back what a written frame freed) and the completeness table (~60 bytes a series), whatever the range and the series
count. With --wide a frame is a whole chunk (one minute of every series at least): a wide file holds
every series of its time range.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from healthpipe.common import allocator
from healthpipe.common.config import HealthpipeConfig, QuerySettings
from healthpipe.common.errors import ConfigError
from healthpipe.common.progress import Steps
from healthpipe.common.times import iso
from healthpipe.ml import data, shape

T = TypeVar("T")
BINS = 120  # columns of the completeness picture
DPI = 110
LABELS = 60  # at most this many series named on its side
PICTURE_ROWS = 1000  # series drawn at most (the least complete): the picture is at most ~1,300 pixels tall


def healthpipe_version() -> str:
    try:
        return version("healthpipe")
    except PackageNotFoundError:
        return "unknown"


# one record of the picture's spill file: (series row × BINS + bin, grid points expected, present)
BIN_RECORD = np.dtype([("cell", "<i8"), ("expected", "<i4"), ("present", "<i4")])
TABLE_BLOCK = 100_000  # completeness.csv rows built at once
SPILL_READ = 1 << 20  # records read back at once when the picture is drawn (16 MB)


class Coverage:
    """Per series, as chunks stream by: grid points expected and present, longest gap.

    A few numbers per series are kept in arrays (~60 bytes with its id, bytes in a sorted array: a dict of str ids
    took ~150 MB at 1,000,000 series), filled without a per-series Python loop. The per time-bin counts only the
    picture needs go to an anonymous file, one record per (series, bin) a chunk touched, and are read back at the
    end for the at most PICTURE_ROWS series it draws: kept in memory as a (series × BINS) matrix they took 1.2 GB
    at 1,000,000 series (B13's export curve). The table is written in blocks of TABLE_BLOCK series."""

    def __init__(self, start_ms: int, end_ms: int, step_ms: int | None, spill_dir: Path | None = None) -> None:
        self.start_ms, self.end_ms, self.step_ms = start_ms, end_ms, step_ms
        self.n = 0  # series seen; series i (its row) is ids[i], and so on
        self.ids = np.zeros(0, dtype="S16")  # ASCII ids as bytes (series ids are 16 hex digits)
        self.by_id = np.zeros(0, dtype=np.int64)  # the rows in id order: ids[by_id] is sorted
        self.kinds: dict[str, int] = {}  # "query:metric" → its code; a series' name is that and its id's start
        self.kind_of = np.zeros(0, dtype=np.int32)
        self.expected = np.zeros(0, dtype=np.int64)
        self.present = np.zeros(0, dtype=np.int64)
        self.last_seen = np.zeros(0, dtype=np.int64)
        self.longest_gap_ms = np.zeros(0, dtype=np.int64)
        # closed by close() / the with block: the file lives as long as the Coverage does
        self._bins_file = tempfile.TemporaryFile(prefix="healthpipe-coverage-", dir=spill_dir)  # noqa: SIM115

    def close(self) -> None:
        self._bins_file.close()

    def __enter__(self) -> Coverage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _bins(self, ts: np.ndarray) -> np.ndarray:
        span = max(1, self.end_ms - self.start_ms)
        return np.clip(((ts - self.start_ms - 1) * BINS) // span, 0, BINS - 1)

    def rows_of_ids(self, ids: np.ndarray) -> np.ndarray:
        """Each id's row (ids as bytes or ASCII str), -1 for an id not seen."""
        ids = np.asarray(ids).astype(bytes)
        width = f"S{max(ids.dtype.itemsize, self.ids.dtype.itemsize, 1)}"
        ids, known = ids.astype(width), self.ids[self.by_id].astype(width)
        rows = np.full(len(ids), -1, dtype=np.int64)
        if len(known):
            at = np.minimum(np.searchsorted(known, ids), len(known) - 1)
            found = known[at] == ids
            rows[found] = self.by_id[at[found]]
        return rows

    def _rows_of(self, frame: pd.DataFrame) -> np.ndarray:
        """Each frame row's series row, new series given rows (and kinds) as they first appear."""
        codes, uniques = pd.factorize(frame["series_id"].to_numpy())
        ids = np.asarray(uniques, dtype=object).astype(bytes)
        if ids.dtype.itemsize > self.ids.dtype.itemsize:  # a longer id than any before (not a series id's 16)
            self.ids = self.ids.astype(ids.dtype)
        rows = self.rows_of_ids(ids)
        new = np.flatnonzero(rows < 0)
        if len(new):
            n = self.n + len(new)
            rows[new] = np.arange(self.n, n)
            if n > len(self.last_seen):
                more = max(n - len(self.last_seen), len(self.last_seen))  # doubling: amortised growth
                self.ids = np.concatenate([self.ids, np.zeros(more, dtype=self.ids.dtype)])
                self.kind_of = np.concatenate([self.kind_of, np.zeros(more, dtype=np.int32)])
                self.expected = np.concatenate([self.expected, np.zeros(more, dtype=np.int64)])
                self.present = np.concatenate([self.present, np.zeros(more, dtype=np.int64)])
                self.last_seen = np.concatenate([self.last_seen, np.full(more, self.start_ms, dtype=np.int64)])
                self.longest_gap_ms = np.concatenate([self.longest_gap_ms, np.zeros(more, dtype=np.int64)])
            self.ids[self.n:n] = ids[new]
            _, firsts = np.unique(codes, return_index=True)
            kinds = frame["query"].astype(str).to_numpy()[firsts[new]] + ":" + \
                frame["metric"].astype(str).to_numpy()[firsts[new]]
            kind_codes, kind_names = pd.factorize(kinds)
            codes_of_names = np.array([self.kinds.setdefault(k, len(self.kinds)) for k in kind_names], dtype=np.int32)
            self.kind_of[self.n:n] = codes_of_names[kind_codes]
            self.n = n
            by_id = np.concatenate([self.by_id, rows[new]])
            self.by_id = by_id[np.argsort(self.ids[by_id], kind="stable")]
        return rows[codes]

    def add(self, frame: pd.DataFrame, value_column: str) -> None:
        if frame.empty:
            return
        ts = frame["ts"].dt.as_unit("ms").astype("int64").to_numpy()
        present = frame[value_column].notna().to_numpy()
        rows = self._rows_of(frame)
        n = self.n
        self.expected[:n] += np.bincount(rows, minlength=n)
        self.present[:n] += np.bincount(rows[present], minlength=n)
        # the picture's counts: one record per (series, bin) this chunk touched
        cells, cell_of_row = np.unique(rows * BINS + self._bins(ts), return_inverse=True)
        records = np.empty(len(cells), dtype=BIN_RECORD)
        records["cell"] = cells
        records["expected"] = np.bincount(cell_of_row, minlength=len(cells))
        records["present"] = np.bincount(cell_of_row[present], minlength=len(cells))
        self._bins_file.write(records.tobytes())
        # longest gap: between a series' present samples in time order, the first one measured from where the
        # series was last seen (the range's start for a new one)
        r, t = rows[present], ts[present]
        if len(r):
            order = np.lexsort((t, r))
            r, t = r[order], t[order]
            first_of_series = np.r_[True, r[1:] != r[:-1]]
            before = np.where(first_of_series, self.last_seen[r], np.r_[t[:1], t[:-1]])
            np.maximum.at(self.longest_gap_ms, r, t - before)
            last_of_series = np.r_[r[1:] != r[:-1], True]
            self.last_seen[r[last_of_series]] = t[last_of_series]

    def __len__(self) -> int:
        return self.n

    def _names(self, rows: np.ndarray) -> list[str]:
        kind_names = list(self.kinds)
        return [f"{kind_names[k]}:{i[:6].decode()}" for k, i in zip(self.kind_of[rows], self.ids[rows], strict=True)]

    def share_present(self) -> np.ndarray:
        """Per series row: the share of its grid points present (for raw exports: 1 if any sample, else 0)."""
        n = self.n
        if self.step_ms:
            return self.present[:n] / np.maximum(self.expected[:n], 1)
        return (self.present[:n] > 0).astype(float)

    def _table(self, rows: np.ndarray) -> pd.DataFrame:
        gap = np.maximum(self.longest_gap_ms[rows], self.end_ms - self.last_seen[rows])
        return pd.DataFrame({"series_id": self.ids[rows].astype(str).astype(object), "name": self._names(rows),
                             "expected": self.expected[rows] if self.step_ms else [""] * len(rows),
                             "present": self.present[rows], "longest_gap_s": gap / 1000},
                            columns=["series_id", "name", "expected", "present", "longest_gap_s"])

    def table(self) -> pd.DataFrame:
        """One row per series, in series_id order."""
        return self._table(self.by_id)

    def write_csv(self, path: Path) -> None:
        """table() as CSV, built and written TABLE_BLOCK series at a time."""
        with path.open("w", newline="") as out:
            for i in range(0, max(self.n, 1), TABLE_BLOCK):
                self._table(self.by_id[i:i + TABLE_BLOCK]).to_csv(out, index=False, header=i == 0)

    def _bin_counts(self, rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(expected, present) per bin of the given series rows, in their order: the spill file read back."""
        place = np.full(self.n, -1, dtype=np.int64)
        place[rows] = np.arange(len(rows))
        expected = np.zeros((len(rows), BINS), dtype=np.int64)
        present = np.zeros((len(rows), BINS), dtype=np.int64)
        self._bins_file.flush()
        self._bins_file.seek(0)
        while block := self._bins_file.read(SPILL_READ * BIN_RECORD.itemsize):
            records = np.frombuffer(block, dtype=BIN_RECORD)
            at = place[records["cell"] // BINS]
            drawn = at >= 0
            where = (at[drawn], records["cell"][drawn] % BINS)
            np.add.at(expected, where, records["expected"][drawn])
            np.add.at(present, where, records["present"][drawn])
        self._bins_file.seek(0, 2)  # appends go on at the end
        return expected, present

    def picture(self, path: Path, title: str) -> tuple[int, int, int, int]:
        """Draw the series × time heatmap (green: every grid point present, red: none) into `path`; returns the
        heatmap's box in the image's pixels (left, top, right, bottom), so a test can read its cells back."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.by_id  # in series_id order
        worst_of = None
        if len(rows) > PICTURE_ROWS:  # the least complete ones: what a reader of the picture looks for
            share = self.share_present()
            worst_of, rows = len(rows), rows[np.lexsort((np.arange(len(rows)), share[rows]))[:PICTURE_ROWS]]
        if not len(rows):
            labels, matrix = ["(no series)"], np.zeros((1, BINS))
        else:
            labels = []
            expected, present = self._bin_counts(rows.tolist())
            matrix = (np.divide(present, np.maximum(expected, 1)) if self.step_ms else (present > 0).astype(float))
        count = len(labels) or len(rows)
        height = min(12.0, 1.5 + 0.18 * count)
        fig, ax = plt.subplots(figsize=(11, height), dpi=DPI)
        image = ax.imshow(matrix, aspect="auto", cmap="RdYlGn", vmin=0, vmax=1, interpolation="nearest",
                          extent=(0, BINS, count, 0))
        # name at most LABELS rows: thousands of tick labels are unreadable, and drawing them was 40% of an export
        every = -(-count // LABELS)
        named = np.arange(0, count, every)
        ax.set_yticks(named + 0.5)
        ax.set_yticklabels(labels or self._names(rows[named]), fontsize=6 if len(named) > 30 else 8)
        if worst_of is not None:
            ax.set_ylabel(f"the {count:,} least complete of {worst_of:,} series, every {every}th named",
                          fontsize=8)
        elif every > 1:
            ax.set_ylabel(f"{count} series, every {every}th named", fontsize=8)
        ticks = np.linspace(0, BINS, 5)
        ax.set_xticks(ticks)
        ax.set_xticklabels([iso(int(self.start_ms + t / BINS * (self.end_ms - self.start_ms)))[:16] for t in ticks],
                           fontsize=8)
        ax.set_title(title, fontsize=10)
        fig.colorbar(image, ax=ax, label="share of grid points present" if self.step_ms else "any sample")
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
        box = ax.get_window_extent()  # display pixels from the bottom left; the PNG's rows run from the top
        height_px = fig.get_figheight() * DPI
        plt.close(fig)
        return (round(box.x0), round(height_px - box.y1), round(box.x1), round(height_px - box.y0))


def export(cfg: HealthpipeConfig, queries: list[QuerySettings], start_ms: int, end_ms: int, out: Path,
           step_ms: int | None = None, as_of_ms: int | None = None, wide: bool = False, rate_counters: bool = False,
           feature_window_ms: int | None = None, fmt: str = "parquet", overwrite: bool = False,
           progress: bool = True, argv: list[str] | None = None, step_text: str | None = None,
           snapshot_id: int | None = None) -> dict:
    data.check_range(start_ms, end_ms, as_of_ms)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty (pass --overwrite to replace it)")
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    (tmp / "data").mkdir(parents=True)
    try:
        manifest = _write(cfg, queries, start_ms, end_ms, tmp, step_ms, as_of_ms, wide, rate_counters,
                          feature_window_ms, fmt, progress, snapshot_id)
        manifest |= {"command": argv or sys.argv, "queries": [q.name for q in queries], "from": iso(start_ms),
                     "to": iso(end_ms), "step": step_text, "as_of": iso(as_of_ms) if as_of_ms else None,
                     "wide": wide, "rate_counters": rate_counters, "format": fmt,
                     "features": f"{feature_window_ms // 1000}s" if feature_window_ms else None,
                     "healthpipe_version": healthpipe_version(), "written_at": iso(int(time.time() * 1000))}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _one_ahead(items: Iterator[T]) -> Iterator[T]:
    """The items, the next one produced in a thread while the caller works on this one: InfluxDB answers the
    next frame's query while this one is written (memory: two frames)."""
    end: Any = object()
    with ThreadPoolExecutor(1, thread_name_prefix="export-read") as pool:
        upcoming = pool.submit(next, items, end)
        while (item := upcoming.result()) is not end:
            upcoming = pool.submit(next, items, end)
            yield item


def _write(cfg, queries, start_ms, end_ms, tmp: Path, step_ms, as_of_ms, wide, rate_counters, feature_window_ms,
           fmt, progress, snapshot_id=None) -> dict:
    with Coverage(start_ms, end_ms, step_ms, spill_dir=tmp) as coverage:
        return _write_with(coverage, cfg, queries, start_ms, end_ms, tmp, step_ms, as_of_ms, wide, rate_counters,
                           feature_window_ms, fmt, progress, snapshot_id)


def _write_with(coverage: Coverage, cfg, queries, start_ms, end_ms, tmp: Path, step_ms, as_of_ms, wide, rate_counters,
                feature_window_ms, fmt, progress, snapshot_id) -> dict:
    files: list[dict] = []
    tiers: dict[tuple[str, str], dict] = {}
    rows_total = part = 0
    stream = _one_ahead(data.chunks(cfg, queries, start_ms, end_ms, step_ms, as_of_ms, rate_counters,
                                    feature_window_ms, snapshot_id=snapshot_id, whole_chunks=wide))
    read_snapshots = set()
    span = max(1, (end_ms - start_ms) * len(queries))
    done = 0
    steps = Steps()
    for chunk_part, frame, last_of_chunk in stream:
        if last_of_chunk:
            done += chunk_part.end_ms - chunk_part.start_ms
        if chunk_part.snapshot_id is not None:
            read_snapshots.add(chunk_part.snapshot_id)
        key = (chunk_part.tier, chunk_part.detail)
        tier = tiers.setdefault(key, {"tier": chunk_part.tier, "detail": chunk_part.detail,
                                      "from": iso(chunk_part.start_ms), "to": iso(chunk_part.end_ms), "rows": 0})
        tier["from"], tier["to"] = min(tier["from"], iso(chunk_part.start_ms)), max(tier["to"], iso(chunk_part.end_ms))
        if len(frame):
            coverage.add(frame, "count" if feature_window_ms else "value")
            tier["rows"] += len(frame)
            days = frame["ts"].dt.as_unit("ms").astype("int64").to_numpy() // 86_400_000  # not strftime: 10x
            for day, rows in frame.groupby(days, sort=True):
                table = shape.wide(rows) if wide else rows
                folder = tmp / "data" / f"date={iso(int(day) * 86_400_000)[:10]}"
                folder.mkdir(exist_ok=True)
                path = folder / f"part-{part:05d}.{fmt}"
                part += 1
                if fmt == "csv":
                    table.to_csv(path, index=wide)
                else:
                    table.to_parquet(path, index=wide, compression="zstd")
                files.append({"path": str(path.relative_to(tmp)), "rows": len(table),
                              "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
                rows_total += len(table)
            del frame, rows, table
            allocator.trim()  # what this frame took, back to the system (without: +40 MB peak at 1M series, B13)
        if progress:
            steps("export", min(done, span) * 100 // span, 100, f"% of the range, {rows_total} rows")
    steps.close()
    coverage.write_csv(tmp / "completeness.csv")
    coverage.picture(tmp / "completeness.png", f"coverage {iso(start_ms)} .. {iso(end_ms)}"
                     + (f", step {step_ms // 1000}s" if step_ms else ""))
    return {"rows": rows_total, "files": files, "tiers": list(tiers.values()),
            # the Iceberg snapshot the cold tier was read at: `export --snapshot` with it rebuilds these files
            "iceberg_snapshot": next(iter(read_snapshots), None),
            "series": len(coverage)}
