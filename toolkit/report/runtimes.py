"""Which runtime for each model: the fastest file of each runtime (at its best precision) side by side, per
target and setup (threads, batch, streams), with the rounds' 95 % intervals."""

from __future__ import annotations

from toolkit.report.rows import ReportRow
from toolkit.report.table import fmt_p50

__all__ = ["runtime_lines"]


def _best_per_backend(rows: list[ReportRow]) -> list[ReportRow]:
    """The lowest-p50 row of each backend, fastest first."""
    best: dict[str, ReportRow] = {}
    for row in rows:
        if row.backend not in best or row.p50_ms < best[row.backend].p50_ms:
            best[row.backend] = row
    return sorted(best.values(), key=lambda r: r.p50_ms)


def _verdict(first: ReportRow, second: ReportRow) -> str:
    ratio = second.p50_ms / first.p50_ms
    overlap = first.p50_ci_ms and second.p50_ci_ms and first.p50_ci_ms[1] >= second.p50_ci_ms[0]
    tied = " (their intervals overlap: no clear winner)" if overlap else ""
    return f"{first.backend} fastest, {ratio:.2f}× {second.backend}'s p50{tied}"


def runtime_lines(rows: list[ReportRow]) -> list[str]:
    """One line per model and setup that ran in more than one runtime."""
    groups: dict[tuple, list[ReportRow]] = {}
    for row in rows:
        key = (row.target_label, row.threads, row.batch_size, row.streams, row.model)
        groups.setdefault(key, []).append(row)
    lines = []
    for (target, threads, batch, streams, model), group in groups.items():
        best = _best_per_backend(group)
        if len(best) < 2:
            continue
        files = "; ".join(f"{r.backend} {r.format} {r.precision} {fmt_p50(r)} ms" for r in best)
        setup = f"{target}, {threads} thread(s), batch {batch}, {streams} stream(s)"
        lines.append(f"**{model}** ({setup}): {files}. {_verdict(best[0], best[1])}.")
    return lines
