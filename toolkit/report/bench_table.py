"""The table `edgekd bench` prints at the end: measured rows, rounds pooled, with speedup and size against the
teacher's fp32 file of the same setup (plain text cells; the CLI renders them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from toolkit.report.inputs import read_manifest
from toolkit.report.rows import build_rows
from toolkit.report.significance import available
from toolkit.report.table import fmt_ms, fmt_p50, fmt_size, fmt_speedup, fmt_spread, opt

__all__ = ["BenchTable", "bench_table"]

HEADERS = ("model", "format", "prec", "backend", "thr", "batch", "streams", "p50 ms [95% CI]", "p99 ms",
           "rounds · spread", "img/s", "size", "acc", "speedup [95% CI]", "size ×")  # fmt: skip


@dataclass
class BenchTable:
    """Rows of cells under `HEADERS`; `baseline[i]` marks the teacher fp32 rows; `tested`: whether the
    speedups were tested for significance (scipy, the report extra, is installed)."""

    headers: tuple[str, ...]
    rows: list[list[str]]
    baseline: list[bool]
    tested: bool
    targets: list[str]


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


def bench_table(records: list, manifest_path: Path) -> BenchTable:
    """The measured configurations of `records`, joined with the bundle's manifest when there is one."""
    manifest = read_manifest(manifest_path) if manifest_path.is_file() else {}
    tested = available()  # scipy comes with the report extra; a board may have only numpy
    rows, baseline = [], []
    for row in build_rows(records, manifest):
        rows.append([
            row.model, row.format, row.precision, row.backend, str(row.threads), str(row.batch_size),
            str(row.streams), fmt_p50(row), fmt_ms(row.p99_ms), fmt_spread(row).replace("**", ""),
            opt(row.throughput_ips, lambda t: f"{t:,.0f}"), fmt_size(row.size_bytes), _pct(row.accuracy),
            "baseline" if row.is_baseline else fmt_speedup(row, tested=tested),
            opt(row.size_ratio, lambda x: f"{x:.1f}×"),
        ])  # fmt: skip
        baseline.append(row.is_baseline)
    targets = list(dict.fromkeys(r.target["label"] for r in records))
    return BenchTable(HEADERS, rows, baseline, tested, targets)
