"""Quantized files slower than their fp32 twin: every int8, dynamic-int8 or fp16 row whose p50 interval lies
wholly above the fp32 file's of the same model, format, runtime and setup, said in one line each."""

from __future__ import annotations

from benchmarks.manifest import LayoutSearch
from toolkit.report.rows import ReportRow
from toolkit.report.table import fmt_p50

__all__ = ["slower_than_fp32_lines"]


def _key(row: ReportRow) -> tuple:
    return (row.target_label, row.threads, row.batch_size, row.streams, row.model, row.format, row.backend)


def _clearly_slower(row: ReportRow, fp32: ReportRow) -> bool:
    if row.p50_ci_ms and fp32.p50_ci_ms:
        return row.p50_ci_ms[0] > fp32.p50_ci_ms[1]
    return row.p50_ms > fp32.p50_ms


def _searched(search: LayoutSearch | None) -> str:
    """What export's int8 layout search found, in a sentence; empty where none ran."""
    if not search:
        return ""
    outcome = "one was faster than fp32" if search.faster_than_fp32 else "none was faster than fp32"
    return (f" Export tried {len(search.tried)} int8 layouts on {search.cpu}: {outcome} there; "
            f"it kept {search.kept}.")  # fmt: skip


def slower_than_fp32_lines(rows: list[ReportRow], *, profiled: bool = False) -> list[str]:
    """One line per quantized file measured slower than its fp32 twin; `profiled`: the run has a profile."""
    fp32 = {_key(r): r for r in rows if r.precision == "fp32"}
    lines = []
    for row in rows:
        twin = fp32.get(_key(row))
        if row.precision == "fp32" or twin is None or not _clearly_slower(row, twin):
            continue
        setup = f"{row.target_label}, {row.threads} thread(s), batch {row.batch_size}"
        ratio = row.p50_ms / twin.p50_ms
        times = f"{ratio:.2f}× slower than its fp32 file ({fmt_p50(row)} vs {fmt_p50(twin)} ms)"
        lines.append(f"**{row.model} {row.format} {row.precision}** ({row.backend}; {setup}): "
                     f"{times}.{_searched(row.layout_search)}")  # fmt: skip
    if lines:
        why = "Where the time goes, below" if profiled else "`edgekd profile` says where their time goes"
        lines.append(f"Smaller is not faster here for these files; {why}.")
    return lines
