"""Tables shared by the Markdown and HTML renderers: cells as Markdown-inline text plus raw sort values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from toolkit.report.rows import ReportRow

__all__ = [
    "DASH",
    "Table",
    "fmt_size",
    "fmt_ms",
    "fmt_p50",
    "fmt_speedup",
    "fmt_spread",
    "opt",
    "target_cell",
    "results_table",
    "md_table",
]

DASH = "–"


@dataclass(frozen=True)
class Table:
    """Headers, cells (Markdown-inline text), per-cell sort values and column groups (label, span)."""

    headers: list[str]
    cells: list[list[str]]
    values: list[list[Any]] = field(default_factory=list)  # same shape as cells; None sorts by the text
    numeric: list[bool] = field(default_factory=list)  # right-aligned, sorted by value, missing last
    groups: list[tuple[str, int]] = field(default_factory=list)  # empty label = ungrouped columns


def fmt_size(n: int | None) -> str:
    """Bytes as a readable size: MiB from 1 MiB up, KiB below."""
    if n is None:
        return DASH
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def fmt_ms(v: float) -> str:
    """Milliseconds with about three significant digits."""
    return f"{v:.4f}" if v < 0.1 else f"{v:.3f}" if v < 10 else f"{v:.2f}" if v < 100 else f"{v:.1f}"


def fmt_p50(row: ReportRow) -> str:
    """'0.0521 [0.0498–0.0544]': the pooled p50 with its 95 % interval."""
    if row.p50_ci_ms is None:
        return fmt_ms(row.p50_ms)
    low, high = row.p50_ci_ms
    return f"{fmt_ms(row.p50_ms)} [{fmt_ms(low)}–{fmt_ms(high)}]"


def fmt_speedup(row: ReportRow, *, tested: bool = True) -> str:
    """'11.7× [10.9–12.4]', '1.02× [0.97–1.08] (n.s.)' when the test finds no difference, a dash without
    a baseline; `tested=False` leaves the test out (no scipy on a board)."""
    if row.speedup is None:
        return DASH
    if row.speedup_ci is None:
        return f"{row.speedup:.2f}×"
    low, high = row.speedup_ci
    diff = row.vs_baseline if tested else None
    mark = diff.mark() if diff is not None else ""
    return f"{row.speedup:.2f}× [{low:.2f}–{high:.2f}]{mark}"


def fmt_spread(row: ReportRow) -> str:
    """Rounds and how far their p50s spread: '5 · 2.1%', flagged when unstable or bimodal."""
    if row.rounds < 2:
        return f"{row.rounds} · –"
    text = f"{row.rounds} · {row.spread * 100:.1f}%"
    flags = [f for f, on in (("unstable", row.unstable), ("bimodal", row.bimodal)) if on]
    return f"{text} **{' '.join(flags)}**" if flags else text


def opt(v: Any, fmt: Callable[[Any], str]) -> str:
    """Format `v`, or a dash when it is missing."""
    return DASH if v is None else fmt(v)


def target_cell(row: ReportRow) -> str:
    """'native', or the target's own label in italics so emulated/constrained rows stand out."""
    return "native" if row.target_kind == "native" else f"*{row.target_label or row.target_kind}*"


def _agreement(row: ReportRow) -> str:
    """Top-1 agreement with torch; a failed parity check is shouted."""
    text = opt(row.top1_agreement, lambda a: f"{a * 100:.2f}%")
    return f"**FAILED** ({text})" if row.parity_passed is False else text


_Cell = Callable[[ReportRow], str]
_Value = Callable[[ReportRow], Any]
# (header, cell text, sort value or None for text columns)
_COLUMNS: list[tuple[str, _Cell, _Value | None]] = [
    ("Model", lambda r: f"**{r.model}**" if r.is_baseline else r.model, None),
    ("Format", lambda r: r.format, None),
    ("Precision", lambda r: r.precision, None),
    ("Backend", lambda r: r.backend, None),
    ("Threads", lambda r: str(r.threads), lambda r: r.threads),
    ("Batch", lambda r: opt(r.batch_size, str), lambda r: r.batch_size),
    ("Streams", lambda r: str(r.streams), lambda r: r.streams),
    ("Target", target_cell, None),
    ("Params", lambda r: opt(r.params, lambda p: f"{p:,}"), lambda r: r.params),
    ("MACs", lambda r: opt(r.macs, lambda m: f"{m:,}"), lambda r: r.macs),
    ("Size", lambda r: fmt_size(r.size_bytes), lambda r: r.size_bytes),
    ("Acc %", lambda r: opt(r.accuracy, lambda a: f"{a * 100:.2f}"), lambda r: r.accuracy),
    ("Top-1 agr.", _agreement, lambda r: r.top1_agreement),
    ("p50 ms [95% CI]", fmt_p50, lambda r: r.p50_ms),
    ("Rounds · spread", fmt_spread, lambda r: r.spread),
    ("p90 ms", lambda r: fmt_ms(r.p90_ms), lambda r: r.p90_ms),
    ("p99 ms", lambda r: fmt_ms(r.p99_ms), lambda r: r.p99_ms),
    ("img/s", lambda r: opt(r.throughput_ips, lambda t: f"{t:,.0f}"), lambda r: r.throughput_ips),
    ("Peak RSS MB", lambda r: opt(r.peak_rss_mb, lambda m: f"{m:.1f}"), lambda r: r.peak_rss_mb),
    ("Speedup [95% CI]", fmt_speedup, lambda r: r.speedup),
    ("Size ×", lambda r: opt(r.size_ratio, lambda s: f"{s:.1f}×"), lambda r: r.size_ratio),
    ("Mem ×", lambda r: opt(r.memory_ratio, lambda s: f"{s:.2f}×"), lambda r: r.memory_ratio),
    (
        "Δ acc (pts)",
        lambda r: opt(r.accuracy_delta_pts, lambda d: f"{d:+.2f}"),
        lambda r: r.accuracy_delta_pts,
    ),
    ("Pareto", lambda r: r.pareto, None),
]
_LEFT = 8  # Model … Target are text, left-aligned


def results_table(rows: list[ReportRow]) -> Table:
    """The trade-off table: one line per row, in the order given."""
    return Table(
        headers=[name for name, _, _ in _COLUMNS],
        cells=[[cell(r) for _, cell, _ in _COLUMNS] for r in rows],
        values=[[value(r) if value else None for _, _, value in _COLUMNS] for r in rows],
        numeric=[i >= _LEFT and name != "Pareto" for i, (name, _, _) in enumerate(_COLUMNS)],
    )


def _flat_headers(table: Table) -> list[str]:
    """Headers with their group label in front, since a Markdown table has one header line."""
    if not table.groups:
        return table.headers
    labels = [label for label, span in table.groups for _ in range(span)]
    return [f"{g}: {h}" if g else h for g, h in zip(labels, table.headers, strict=True)]


def md_table(table: Table) -> list[str]:
    """The table as Markdown lines."""
    right = table.numeric or [False] * len(table.headers)
    lines = ["| " + " | ".join(_flat_headers(table)) + " |"]
    lines.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in table.cells]
    return lines
