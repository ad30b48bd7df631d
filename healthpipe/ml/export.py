"""`healthpipe export`: a training data set on disk, across the tiers, with its manifest and completeness.

    DIR/data/date=YYYY-MM-DD/part-NNNNN.parquet   (or .csv; hive-partitioned by date)
    DIR/manifest.json                              command, queries, range, step, as-of, tiers used, rows,
                                                   SHA-256 of every file, healthpipe version
    DIR/completeness.csv                           per series: expected grid points, present, longest gap
    DIR/completeness.png                           series × time heatmap of coverage

Everything is written under a temporary directory next to DIR and renamed into place at the end: an export
that fails or is interrupted leaves no DIR that looks complete. Memory is bounded by two chunks (one written while
the next is read; ~300,000 rows each, healthpipe.ml.data.CHUNK_ROWS), whatever the range.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from healthpipe.common.config import HealthpipeConfig, QuerySettings
from healthpipe.common.errors import ConfigError
from healthpipe.common.progress import Steps
from healthpipe.common.times import iso
from healthpipe.ml import data, shape

T = TypeVar("T")
BINS = 120  # columns of the completeness picture
DPI = 110
LABELS = 60  # at most this many series named on its side


def healthpipe_version() -> str:
    try:
        return version("healthpipe")
    except PackageNotFoundError:
        return "unknown"


@dataclass
class Coverage:
    """Per series, as chunks stream by: grid points expected and present, per bin and in total, longest gap."""

    start_ms: int
    end_ms: int
    step_ms: int | None
    expected: dict[str, np.ndarray] = field(default_factory=dict)
    present: dict[str, np.ndarray] = field(default_factory=dict)
    last_seen: dict[str, int] = field(default_factory=dict)
    longest_gap_ms: dict[str, int] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)

    def _bins(self, ts: np.ndarray) -> np.ndarray:
        span = max(1, self.end_ms - self.start_ms)
        return np.clip(((ts - self.start_ms - 1) * BINS) // span, 0, BINS - 1)

    def add(self, frame: pd.DataFrame, value_column: str) -> None:
        if frame.empty:
            return
        ts = frame["ts"].dt.as_unit("ms").astype("int64").to_numpy()
        present = frame[value_column].notna().to_numpy()
        for key, idx in pd.Series(np.arange(len(frame))).groupby(frame["series_id"].to_numpy()).groups.items():
            sid, rows = str(key), np.asarray(idx)
            bins = self._bins(ts[rows])
            exp = self.expected.setdefault(sid, np.zeros(BINS, dtype=np.int64))
            pre = self.present.setdefault(sid, np.zeros(BINS, dtype=np.int64))
            np.add.at(exp, bins, 1)
            np.add.at(pre, bins[present[rows]], 1)
            seen = np.sort(ts[rows][present[rows]])
            if len(seen):
                prev = self.last_seen.get(sid, self.start_ms)
                gaps = np.diff(np.concatenate([[prev], seen]))
                self.longest_gap_ms[sid] = max(self.longest_gap_ms.get(sid, 0), int(gaps.max()))
                self.last_seen[sid] = int(seen[-1])
            self.names.setdefault(sid, f"{frame['query'].iloc[rows[0]]}:{frame['metric'].iloc[rows[0]]}:"
                                       f"{sid[:6]}")

    def table(self) -> pd.DataFrame:
        rows = []
        for sid in sorted(self.expected):
            gap = max(self.longest_gap_ms.get(sid, 0), self.end_ms - self.last_seen.get(sid, self.start_ms))
            rows.append({"series_id": sid, "name": self.names[sid],
                         "expected": int(self.expected[sid].sum()) if self.step_ms else "",
                         "present": int(self.present[sid].sum()), "longest_gap_s": gap / 1000})
        return pd.DataFrame(rows, columns=["series_id", "name", "expected", "present", "longest_gap_s"])

    def picture(self, path: Path, title: str) -> tuple[int, int, int, int]:
        """Draw the series × time heatmap (green: every grid point present, red: none) into `path`; returns the
        heatmap's box in the image's pixels (left, top, right, bottom), so a test can read its cells back."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        sids = sorted(self.expected)
        if not sids:
            sids, matrix = ["(no series)"], np.zeros((1, BINS))
        else:
            matrix = np.array([np.divide(self.present[s], np.maximum(self.expected[s], 1)) if self.step_ms
                               else (self.present[s] > 0).astype(float) for s in sids])
        height = min(12.0, 1.5 + 0.18 * len(sids))
        fig, ax = plt.subplots(figsize=(11, height), dpi=DPI)
        image = ax.imshow(matrix, aspect="auto", cmap="RdYlGn", vmin=0, vmax=1, interpolation="nearest",
                          extent=(0, BINS, len(sids), 0))
        # name at most LABELS rows: thousands of tick labels are unreadable, and drawing them was 40% of an export
        every = -(-len(sids) // LABELS)
        named = np.arange(0, len(sids), every)
        ax.set_yticks(named + 0.5)
        ax.set_yticklabels([self.names.get(sids[i], sids[i]) for i in named], fontsize=6 if len(named) > 30 else 8)
        if every > 1:
            ax.set_ylabel(f"{len(sids)} series, every {every}th named", fontsize=8)
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
    next chunk's query while this chunk is written (memory: two chunks)."""
    end: Any = object()
    with ThreadPoolExecutor(1, thread_name_prefix="export-read") as pool:
        upcoming = pool.submit(next, items, end)
        while (item := upcoming.result()) is not end:
            upcoming = pool.submit(next, items, end)
            yield item


def _write(cfg, queries, start_ms, end_ms, tmp: Path, step_ms, as_of_ms, wide, rate_counters, feature_window_ms,
           fmt, progress, snapshot_id=None) -> dict:
    coverage = Coverage(start_ms, end_ms, step_ms)
    files: list[dict] = []
    tiers: dict[tuple[str, str], dict] = {}
    rows_total = part = 0
    stream = _one_ahead(data.chunks(cfg, queries, start_ms, end_ms, step_ms, as_of_ms, rate_counters,
                                    feature_window_ms, snapshot_id=snapshot_id))
    read_snapshots = set()
    span = max(1, (end_ms - start_ms) * len(queries))
    done = 0
    steps = Steps()
    for chunk_part, frame in stream:
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
        if progress:
            steps("export", min(done, span) * 100 // span, 100, f"% of the range, {rows_total} rows")
    steps.close()
    coverage.table().to_csv(tmp / "completeness.csv", index=False)
    coverage.picture(tmp / "completeness.png", f"coverage {iso(start_ms)} .. {iso(end_ms)}"
                     + (f", step {step_ms // 1000}s" if step_ms else ""))
    return {"rows": rows_total, "files": files, "tiers": list(tiers.values()),
            # the Iceberg snapshot the cold tier was read at: `export --snapshot` with it rebuilds these files
            "iceberg_snapshot": next(iter(read_snapshots), None),
            "series": len(coverage.expected)}
