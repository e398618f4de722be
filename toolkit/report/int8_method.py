"""Which int8 method made each student's shipped int8 file: post-training (PTQ) or quantization-aware
distillation (QAT-KD), with both files' accuracy on the validation split against fp32, one line per file."""

from __future__ import annotations

from toolkit.report.rows import ReportRow

__all__ = ["int8_method_lines"]


def _pct(value: float, fp32: float) -> str:
    return f"{100 * value:.2f} % ({100 * (value - fp32):+.2f})"


def int8_method_lines(rows: list[ReportRow]) -> list[str]:
    """One line per int8 file whose manifest entry scored PTQ against fp32 (and QAT-KD where it ran)."""
    seen, lines = set(), []
    for row in rows:
        q = row.qat
        if not q or (row.model, row.format) in seen or not (q["ran"] or q["over_budget"]):
            continue
        seen.add((row.model, row.format))
        fp32 = q["fp32_accuracy"]
        line = f"**{row.model} {row.format} int8**: validation fp32 {100 * fp32:.2f} %"
        line += f", PTQ {_pct(q['ptq_accuracy'], fp32)}"
        if q["ran"]:
            line += f", QAT-KD {_pct(q['qat_accuracy'], fp32)} ({q['epochs']} epochs, {q['seconds']:.0f} s)"
        else:
            line += f": over the {q['budget_pts']} pt budget (`export.qat.when: over-budget` runs QAT-KD)"
        lines.append(f"{line}. Shipped: {'QAT-KD' if q['shipped'] == 'qat-kd' else 'PTQ'}.")
    return lines
