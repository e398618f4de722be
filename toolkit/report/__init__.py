"""Report: benchmark records + bundle manifest → rows → Markdown, HTML, CSV and trade-off plots."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks.files import write_text_atomic
from toolkit.report.bench_table import BenchTable, bench_table
from toolkit.report.blocks import blocks_to_markdown
from toolkit.report.compare import build_compare_report
from toolkit.report.csv_out import save_csv
from toolkit.report.html_out import blocks_to_html
from toolkit.report.inputs import read_manifest, read_results, read_summary
from toolkit.report.markdown import TITLE, ReportContext, build_context, report_blocks
from toolkit.report.pareto import pareto_front
from toolkit.report.plot import save_plot
from toolkit.report.plot_target import save_target_plots
from toolkit.report.recommend import Recommendation, recommend, recommendation_text
from toolkit.report.rows import ReportRow, build_rows
from toolkit.report.run import load_run
from toolkit.rundir import RunDir

__all__ = [
    "BenchTable",
    "bench_table",
    "ReportResult",
    "ReportRow",
    "ReportContext",
    "Recommendation",
    "build_report",
    "build_compare_report",
    "build_rows",
    "build_context",
    "pareto_front",
    "recommend",
    "recommendation_text",
    "read_results",
    "read_manifest",
    "read_summary",
    "save_csv",
    "save_plot",
    "save_target_plots",
]


@dataclass(frozen=True)
class ReportResult:
    """What `build_report` wrote, and the rows and recommendations it wrote them from."""

    markdown_path: Path
    csv_path: Path
    plot_path: Path
    rows: list[ReportRow]
    html_path: Path
    plot_paths: list[Path]
    recommendations: list[Recommendation]
    superseded: int = 0


def _profile_section(run_dir: Path, out_dir: Path, rows: list[ReportRow], recs: list[Recommendation]) -> list:
    """ "Where the time goes" from RUN/profile/profiles.json, when `edgekd profile` wrote one, with the bars
    of the teachers and the recommended students."""
    from benchmarks.profile import read_profiles
    from toolkit.report.blocks import image
    from toolkit.report.plot_profile import save_profile_plot
    from toolkit.report.time_breakdown import profile_blocks

    path = RunDir(run_dir).profiles
    if not path.is_file():
        return []
    data = read_profiles(path)
    teachers = [r.model for r in rows if r.role == "teacher"]
    picked = [row.model for r in recs for row in (r.fastest, r.smallest) if row is not None]
    plot = save_profile_plot(data, list(dict.fromkeys([*teachers, *picked])), out_dir / "profile.png")
    caption = "per-op time by kind of work, µs per run; black tick: the unprofiled p50"
    return [*profile_blocks(data), *([image(plot, caption)] if plot else [])]


def build_report(
    run_dir: Path, *, out_dir: Path | None = None, max_accuracy_drop: float = 1.0
) -> ReportResult:
    """Write report.md, report.html, results.csv and the plots for `run_dir` into `out_dir` (RUN/report)."""
    run = load_run(Path(run_dir))
    out_dir = Path(out_dir) if out_dir is not None else RunDir(run.run_dir).report
    recs = recommend(run.rows, max_accuracy_drop=max_accuracy_drop)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_path = save_plot(run.rows, out_dir / "tradeoff.png")
    plots = save_target_plots(run.rows, out_dir)
    csv_path = save_csv(run.rows, out_dir / "results.csv")
    blocks = report_blocks(run.rows, run.context, recommendations=recs, plots=plots, overview=plot_path,
                           profile=_profile_section(run.run_dir, out_dir, run.rows, recs))  # fmt: skip
    markdown_path = out_dir / "report.md"
    write_text_atomic(markdown_path, blocks_to_markdown(blocks))
    html_path = out_dir / "report.html"
    write_text_atomic(html_path, blocks_to_html(blocks, title=TITLE))
    return ReportResult(
        markdown_path=markdown_path,
        csv_path=csv_path,
        plot_path=plot_path,
        rows=run.rows,
        html_path=html_path,
        plot_paths=[p for paths in plots.values() for p in paths] + [plot_path],
        recommendations=recs,
        superseded=run.superseded,
    )
