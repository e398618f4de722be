"""Which int8 method made each student's shipped int8 file: post-training (PTQ) or quantization-aware
distillation (QAT-KD). Files where QAT-KD ran get a row of fp32, PTQ and QAT-KD side by side (validation
accuracy, size, p50 timed at export); files over the budget where it did not run get a line."""

from __future__ import annotations

from benchmarks.manifest import QatRecord
from toolkit.report.blocks import Block, heading, para, table
from toolkit.report.rows import ReportRow
from toolkit.report.table import Table, fmt_size

__all__ = ["int8_method_blocks", "int8_method_lines", "int8_method_table"]

_METHODS = (("fp32", "fp32"), ("ptq", "PTQ int8"), ("qat-kd", "QAT-KD int8"))


def _pct(value: float, fp32: float) -> str:
    return f"{100 * value:.2f} % ({100 * (value - fp32):+.2f})"


def _records(rows: list[ReportRow]) -> list[tuple[ReportRow, QatRecord]]:
    """One (row, record) per student int8 file whose record says PTQ went over the budget or QAT-KD ran."""
    seen, out = set(), []
    for row in rows:
        q = row.qat
        if not q or (row.model, row.format) in seen or not (q.ran or q.over_budget):
            continue
        seen.add((row.model, row.format))
        out.append((row, q))
    return out


def _shipped(q: QatRecord) -> str:
    return "QAT-KD" if q.shipped == "qat-kd" else "PTQ"


def int8_method_lines(rows: list[ReportRow]) -> list[str]:
    """One line per int8 file over the budget without a side-by-side row (QAT-KD not run, or no timings)."""
    lines = []
    for row, q in _records(rows):
        if q.files:
            continue
        fp32 = q.fp32_accuracy
        line = f"**{row.model} {row.format} int8**: validation fp32 {100 * fp32:.2f} %"
        line += f", PTQ {_pct(q.ptq_accuracy, fp32)}"
        if q.ran:
            line += f", QAT-KD {_pct(q.qat_accuracy, fp32)} ({q.epochs} epochs, {q.seconds:.0f} s)"
        else:
            line += f": over the {q.budget_pts} pt budget (`export.qat.when: over-budget` runs QAT-KD)"
        lines.append(f"{line}. Shipped: {_shipped(q)}.")
    return lines


def _file_cells(q: QatRecord, method: str) -> list[str]:
    f = q.files[method]
    fp32 = q.fp32_accuracy
    accuracy = {"fp32": f"{100 * fp32:.2f} %", "ptq": _pct(q.ptq_accuracy, fp32)}
    accuracy["qat-kd"] = _pct(q.qat_accuracy, fp32)
    low, high = f.p50_range_us
    return [accuracy[method], fmt_size(f.size_bytes), f"{f.p50_us:.1f} [{low:.1f}–{high:.1f}]"]


def int8_method_table(rows: list[ReportRow]) -> tuple[Table, list[str]] | None:
    """fp32, PTQ and QAT-KD side by side for each file where QAT-KD ran, and the timings' descriptions."""
    ran = [(row, q) for row, q in _records(rows) if q.ran and q.files]
    if not ran:
        return None
    cells = []
    for row, q in ran:
        line = [f"{row.model} {row.format}"]
        for method, _ in _METHODS:
            line += _file_cells(q, method)
        shipped = q.shipped_reason or _shipped(q)  # "PTQ: why" or "QAT-KD: why"
        cells.append([*line, f"{q.epochs} epochs, {q.seconds:.0f} s", shipped])
    per_file = ["validation accuracy", "size", "p50 µs [range]"]
    headers = ["file", *per_file * len(_METHODS), "QAT-KD cost", "shipped"]
    groups = [("", 1), *[(label, 3) for _, label in _METHODS], ("", 2)]
    numeric = [False, *[True] * 3 * len(_METHODS), False, False]
    return Table(headers, cells, numeric=numeric, groups=groups), sorted({q.timing for _, q in ran})


def int8_method_blocks(rows: list[ReportRow]) -> list[Block]:
    """The "Post-training int8 or QAT-KD" section: fp32/PTQ/QAT-KD side by side, then over-budget lines."""
    side_by_side, lines = int8_method_table(rows), int8_method_lines(rows)
    if not side_by_side and not lines:
        return []
    blocks = [heading("Post-training int8 or QAT-KD")]
    if side_by_side:
        t, timings = side_by_side
        timed = "; ".join(timings)
        blocks += [table(t), para(f"Validation split; the three files timed at export: {timed}.")]
    return blocks + [para(line) for line in lines]
