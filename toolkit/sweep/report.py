"""The sweep report: every trial's student files in one table and plot, the fronts marked, the recommendation
under the accuracy budget, and the winning trial's config written out ready to run."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from benchmarks.files import write_text_atomic
from toolkit.report.blocks import Block, blocks_to_markdown, heading, image, para, table
from toolkit.report.html_out import blocks_to_html
from toolkit.report.plot import save_plot
from toolkit.report.recommend import Recommendation, recommend, recommendation_text
from toolkit.report.rows import ReportRow, mark_pareto, sort_key
from toolkit.report.run import load_run
from toolkit.report.table import Table, results_table
from toolkit.rundir import RunDir
from toolkit.sweep.node import overlaps
from toolkit.sweep.trials import TrialResult

__all__ = ["sweep_rows", "write_sweep_report"]

TITLE = "edgekd sweep"


def sweep_rows(out: Path, results: list[TrialResult]) -> list[ReportRow]:
    """The KD student rows of every trial (named `tNNN student_kd`), each compared with its own trial's
    teacher, plus the first trial's teacher rows; fronts marked over all of them."""
    rows: list[ReportRow] = []
    for i, r in enumerate(results):
        for row in load_run(out / r.run_dir).rows:
            if row.model == "student_kd":
                rows.append(dataclasses.replace(row, model=f"{r.trial} student_kd"))
            elif row.role == "teacher" and i == 0:
                rows.append(row)
    return mark_pareto(sorted(rows, key=sort_key))


def _value(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _trials_table(results: list[TrialResult]) -> Table:
    keys = list(dict.fromkeys(k for r in results for k in r.params))
    cells, values = [], []
    for r in results:
        speedup = r.teacher_p50_ms / r.p50_ms
        drop = (r.teacher_accuracy - r.accuracy) * 100
        point = [_value(r.params.get(k, "–")) for k in keys]
        cells.append([r.trial, *point, r.file, f"{r.accuracy * 100:.2f}", f"{drop:+.2f}", f"{r.p50_ms:.4f}",
                      f"{speedup:.1f}×", f"{r.size_bytes / 1024:.1f}", f"{r.seconds:.0f}"])  # fmt: skip
        values.append(
            [None] * (len(keys) + 2) + [r.accuracy, drop, r.p50_ms, speedup, r.size_bytes, r.seconds]
        )
    headers = ["Trial", *keys, "Fastest KD file", "Acc %", "Drop pts", "p50 ms", "vs teacher", "KiB", "s"]
    return Table(headers=headers, cells=cells, values=values, numeric=[False] * (len(keys) + 2) + [True] * 6)


def _best_config(out: Path, results: list[TrialResult], recs: list[Recommendation]) -> Path | None:
    """Copy the recommended fastest student's trial config to `out/best.yaml`."""
    picked = next((r.fastest for r in recs if r.fastest is not None), None)
    if picked is None:
        return None
    trial = next(t for t in results if picked.model.startswith(f"{t.trial} "))
    dst = out / "best.yaml"
    shutil.copy2(RunDir(out / trial.run_dir).config, dst)
    return dst


def _closest(results: list[TrialResult], max_drop: float) -> str:
    """Which constraint binds when no trial qualifies: the most accurate trial and its gap."""
    best = max(results, key=lambda r: r.accuracy)
    drop = (best.teacher_accuracy - best.accuracy) * 100
    return (
        f"No trial's KD student is within {max_drop:g} point(s) of the teacher: the most accurate, "
        f"{best.trial}, is {drop:.2f} points below it ({best.accuracy * 100:.2f} vs "
        f"{best.teacher_accuracy * 100:.2f} %), {best.teacher_p50_ms / best.p50_ms:.1f}× faster at p50."
    )


def _isolation(results: list[TrialResult]) -> str:
    """Whether every trial's benchmark had its node alone, from the trials' recorded phases."""
    phases = [(r.trial, p) for r in results for p in r.phases]
    benches = sum(p.name == "bench" for _, p in phases)
    if not benches:
        return "The trials recorded no phases (trials from before edgekd recorded them)."
    timed = f"{sum(bool(r.phases) for r in results)} of {len(results)} trials recorded their phases"
    clashes = overlaps(phases)
    if clashes:
        listed = ", ".join(f"{a} with {b}" for a, b in clashes[:5])
        suspect = "**Benchmarks overlapped other work on their node, so their timings are suspect:**"
        return f"{suspect} {listed} ({timed})."
    nodes = len({p.node for _, p in phases})
    return (
        f"Every benchmark ({benches}) had its node alone: no training, export or benchmark of another "
        f"trial of this sweep ran beside it ({nodes} node(s); {timed}). Work outside edgekd is not seen."
    )


def write_sweep_report(out: Path, results: list[TrialResult], *, max_accuracy_drop: float) -> Path:
    """sweep.md, sweep.html, tradeoff.png and (when a student qualifies) best.yaml in `out`."""
    rows = sweep_rows(out, results)
    recs = recommend(rows, max_accuracy_drop=max_accuracy_drop)
    best = _best_config(out, results, recs)
    plot = save_plot(rows, out / "tradeoff.png")
    blocks: list[Block] = [
        heading(TITLE, 1),
        para(f"{len(results)} trials, each a pipeline run under `{out / 'trials'}` sharing one teacher."),
        para(_isolation(results)),
        heading("Trials"),
        table(_trials_table(results)),
        heading("Recommendation"),
        *[para(recommendation_text(r)) for r in recs],
        para(
            f"Its trial's config: `{best}` (`edgekd run {best} --out DIR`)."
            if best
            else _closest(results, max_accuracy_drop)
        ),  # fmt: skip
        heading("Every KD student file"),
        table(results_table(rows)),
        heading("Accuracy vs p50"),
        image(plot, "accuracy vs p50 latency, every trial's KD student files"),
    ]
    md = out / "sweep.md"
    write_text_atomic(md, blocks_to_markdown(blocks))
    write_text_atomic(out / "sweep.html", blocks_to_html(blocks, title=TITLE))
    return md
