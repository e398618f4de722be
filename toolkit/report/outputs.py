"""The report section on output agreement: each file's outputs on each target against the export machine's."""

from __future__ import annotations

from toolkit.report.blocks import Block, heading, note, para, table
from toolkit.report.rows import ReportRow, sort_key
from toolkit.report.table import Table, target_cell

__all__ = ["output_check_blocks"]


def _checked(rows: list[ReportRow]) -> list[ReportRow]:
    """One row per (target, file, backend) with an output check: the check is made once per file."""
    seen: dict[tuple, ReportRow] = {}
    for r in sorted(rows, key=sort_key):
        if r.output_check is not None:
            seen.setdefault((r.target_name, r.model, r.format, r.precision, r.backend), r)
    return list(seen.values())


def _table(checked: list[ReportRow]) -> Table:
    """Target, file, rows compared, max |diff|, top-1 agreement and whether the file's tolerance holds."""
    cells, values = [], []
    for r in checked:
        c = r.output_check or {}
        ok = "yes" if c["passed"] else "**NO**"
        diff, agreement = f"{c['max_abs_diff']:.3g}", f"{c['top1_agreement'] * 100:.2f}"
        what = [target_cell(r), r.model, r.format, r.precision, r.backend]
        cells.append([*what, str(c["rows"]), diff, agreement, ok])
        values.append([None] * 5 + [c["rows"], c["max_abs_diff"], c["top1_agreement"], None])
    headers = ["Target", "Model", "Format", "Precision", "Backend", "Rows"]
    headers += ["Max abs diff", "Top-1 agr. %", "Within tol."]  # no "|" inside a Markdown table
    return Table(headers=headers, cells=cells, values=values, numeric=[False] * 5 + [True] * 3 + [False])


def output_check_blocks(rows: list[ReportRow]) -> list[Block]:
    """The section, or nothing when no record compared its outputs (a bundle without reference outputs)."""
    checked = _checked(rows)
    if not checked:
        return []
    references = sorted({str((r.output_check or {}).get("reference")) for r in checked})
    blocks = [
        heading("Outputs against the export machine"),
        para(
            f"Each file's logits on the first test images, compared with {'; '.join(references)} "
            "(shipped in the bundle's data/reference.npz), within the file's parity tolerance."
        ),
        table(_table(checked)),
    ]
    failed = [
        f"{r.model} {r.format} {r.precision} on {target_cell(r)}"
        for r in checked
        if not r.output_check["passed"]
    ]
    if failed:
        blocks.append(note(f"**OUTPUTS DIFFER** from the export machine's for {', '.join(failed)}."))
    return blocks
