"""The human-readable verify report: one row per query, then the worst series with their missing ranges."""

from __future__ import annotations

from healthpipe.common.times import iso
from healthpipe.verify.verification import Report

WORST = 10


def _labels(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}={v!r}" for k, v in sorted(labels.items())) + "}"


def table(report: Report) -> str:
    verdict = "EXACT" if report.exact else "NOT EXACT"
    lines = [f"verify ({iso(report.start_ms)}, {iso(report.end_ms)}]: {verdict}  missing {report.missing}, "
             f"extra {report.extra}, mismatched {report.mismatched}, dead-lettered {report.dead_letters.explained}"]
    lines += [f"note: {n}" for n in report.notes]
    header = ("query", "expected", "present", "missing", "extra", "mismatched", "dead-lettered")
    rows = [header] + [(q.name, str(q.expected), str(q.present), str(q.missing), str(q.extra), str(q.mismatched),
                        str(q.dead_lettered)) for q in report.queries]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        lines.append("  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)))
    worst = sorted(((q.name, s) for q in report.queries for s in q.series.values()),
                   key=lambda qs: -(qs[1].missing + qs[1].extra + qs[1].mismatched + qs[1].dead_lettered))[:WORST]
    if worst:
        lines.append("worst series:")
    for name, s in worst:
        parts = [f"missing {s.missing}"] if s.missing else []
        parts += [f"extra {s.extra}"] if s.extra else []
        parts += [f"mismatched {s.mismatched}"] if s.mismatched else []
        parts += [f"dead-lettered {s.dead_lettered}"] if s.dead_lettered else []
        lines.append(f"  {name} {_labels(s.labels)}: {', '.join(parts)}")
        for a, b, n in s.missing_ranges[:5]:
            lines.append(f"      absent [{iso(a)} .. {iso(b)}] {n} samples")
        if len(s.missing_ranges) > 5:
            lines.append(f"      ... {len(s.missing_ranges) - 5} more ranges (--json lists them all)")
    if report.dead_letters.by_reason:
        lines.append("dead letters since the range began: " +
                     ", ".join(f"{r}={n}" for r, n in sorted(report.dead_letters.by_reason.items())))
    return "\n".join(lines)
