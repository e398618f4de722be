"""Report: benchmark records + bundle manifest → rows → Markdown, CSV and a trade-off plot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from toolkit.report.csv_out import save_csv
from toolkit.report.inputs import read_manifest, read_results, read_summary
from toolkit.report.markdown import ReportContext, build_context, to_markdown
from toolkit.report.plot import save_plot
from toolkit.report.rows import ReportRow, build_rows

__all__ = [
    "ReportResult",
    "ReportRow",
    "ReportContext",
    "build_report",
    "build_rows",
    "build_context",
    "read_results",
    "read_manifest",
    "read_summary",
    "to_markdown",
    "save_csv",
    "save_plot",
]

RESULTS = Path("bench/results.jsonl")
MANIFEST = Path("bundle/manifest.json")
SUMMARY = Path("distill/summary.json")


@dataclass(frozen=True)
class ReportResult:
    """What `build_report` wrote, and the rows it wrote them from."""

    markdown_path: Path
    csv_path: Path
    plot_path: Path
    rows: list[ReportRow]


def build_report(run_dir: Path, *, out_dir: Path | None = None) -> ReportResult:
    """Read a run directory's records and write report.md, results.csv and tradeoff.png to `out_dir`."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "report"
    records = read_results(run_dir / RESULTS)
    rows = build_rows(records, read_manifest(run_dir / MANIFEST))
    ctx = build_context(records, read_summary(run_dir / SUMMARY))
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_path = save_plot(rows, out_dir / "tradeoff.png")
    csv_path = save_csv(rows, out_dir / "results.csv")
    markdown_path = out_dir / "report.md"
    markdown_path.write_text(to_markdown(rows, ctx, plot_name=plot_path.name), encoding="utf-8")
    return ReportResult(markdown_path=markdown_path, csv_path=csv_path, plot_path=plot_path, rows=rows)
