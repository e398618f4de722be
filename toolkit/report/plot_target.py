"""Per-target PNGs: accuracy vs p50 latency and vs file size with the Pareto front, and p50 latency bars."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.files import atomic_path
from toolkit.report.plot import TEACHER_COLOR, format_markers, log_axis, model_colors, pyplot
from toolkit.report.rows import ReportRow
from toolkit.report.table import fmt_ms, fmt_p50

__all__ = ["target_slug", "save_target_plots", "plot_caption", "p50_err"]

_FILL = {"fp32": "full", "fp16": "left", "int8": "none", "dynamic-int8": "right"}  # precision → marker fill
_CAPTIONS = {
    "accuracy_latency": "accuracy vs p50 latency (bars: 95% CI), Pareto front dashed",
    "accuracy_size": "accuracy vs file size, Pareto front dashed",
    "latency": "p50 latency per variant (whiskers: 95% CI), teacher dashed",
}
_X = Callable[[ReportRow], "float | None"]
# (x label, x value, front name in ReportRow.pareto)
_AXES: dict[str, tuple[str, _X, str]] = {
    "accuracy_latency": ("p50 latency per batch (ms, log scale)", lambda r: r.p50_ms, "lat"),
    "accuracy_size": (
        "file size (KiB, log scale)",
        lambda r: r.size_bytes / 1024 if r.size_bytes else None,
        "size",
    ),
}


def target_slug(name: str) -> str:
    """A file-name-safe slug of a target name: 'Pi 4 (emulated)' → 'pi-4-emulated'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "target"


def plot_caption(path: Path) -> str:
    """What a file written by `save_target_plots` shows, from its name."""
    return next((c for kind, c in _CAPTIONS.items() if path.stem.startswith(kind + "_")), path.stem)


def _label(row: ReportRow, rows: list[ReportRow]) -> str:
    """'model format precision', plus threads or batch when they vary within the target."""
    label = f"{row.model} {row.format} {row.precision}"
    if len({r.threads for r in rows}) > 1:
        label += f" {row.threads}t"
    if len({r.batch_size for r in rows}) > 1:
        label += f" b{row.batch_size}"
    return label


def p50_err(rows: list[ReportRow]) -> list[list[float]]:
    """matplotlib's asymmetric xerr for the rows' p50s: distances to their 95 % interval ends."""
    cis = [r.p50_ci_ms or (r.p50_ms, r.p50_ms) for r in rows]
    return [[r.p50_ms - lo for r, (lo, _) in zip(rows, cis, strict=True)],
            [hi - r.p50_ms for r, (_, hi) in zip(rows, cis, strict=True)]]  # fmt: skip


def _draw_variants(ax: Any, points: list[ReportRow], rows: list[ReportRow], xof: _X, *, ci: bool) -> None:
    """One marker per row: color = model, shape = format, fill = precision; each its own legend entry;
    `ci` adds the p50's 95 % interval as a horizontal bar."""
    colors, markers = model_colors(rows), format_markers(rows)
    for r in points:
        if ci:
            ax.errorbar(xof(r), (r.accuracy or 0.0) * 100, xerr=p50_err([r]), fmt="none",
                        ecolor=colors[r.model], elinewidth=1.2, capsize=4, zorder=2)  # fmt: skip
        ax.plot(
            xof(r),
            (r.accuracy or 0.0) * 100,
            linestyle="",
            marker=markers[r.format],
            markersize=10,
            markeredgewidth=1.8,
            color=colors[r.model],
            fillstyle=_FILL.get(r.precision, "bottom"),
            label=_label(r, rows),
            zorder=3,
        )


def _draw_front(ax: Any, front: list[ReportRow], xof: _X) -> None:
    """The front as a dashed step line (best accuracy reachable at each cost) with ringed points."""
    xs, ys = [xof(r) for r in front], [(r.accuracy or 0.0) * 100 for r in front]
    ax.step(xs, ys, where="post", color="0.35", linestyle="--", linewidth=1.2, zorder=2)
    ax.scatter(xs, ys, s=330, facecolors="none", edgecolors="0.35", zorder=2, label="Pareto front (ringed)")


def _front_plot(rows: list[ReportRow], path: Path, kind: str, *, dpi: int) -> Path:
    """Accuracy vs one cost axis (log), one marker per row, the target's front for that axis."""
    xlabel, xof, front_name = _AXES[kind]
    points = [r for r in rows if r.accuracy is not None and xof(r) is not None]
    front = sorted((r for r in points if front_name in r.pareto.split("+")), key=lambda r: xof(r) or 0.0)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 5.5))
    try:
        _draw_variants(ax, points, rows, xof, ci=kind == "accuracy_latency")
        if front:
            _draw_front(ax, front, xof)
        if points:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
        else:
            ax.text(0.5, 0.5, "no row has an accuracy", ha="center", va="center", transform=ax.transAxes)
        ax.set_xscale("log")
        log_axis(ax.xaxis)
        ax.set_xlabel(xlabel, fontsize=11)
        ax.set_ylabel("accuracy (%)", fontsize=11)
        ax.set_title(f"{_title(rows)}: {_CAPTIONS[kind]}", fontsize=12)
        ax.grid(True, which="both", alpha=0.3)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _title(rows: list[ReportRow]) -> str:
    """The target as a plot title: its name, and its label when it is not native."""
    r = rows[0]
    return r.target_name if r.target_kind == "native" else f"{r.target_name} [{r.target_label}]"


def _draw_bars(ax: Any, ordered: list[ReportRow], rows: list[ReportRow]) -> None:
    """The bars with their values, and a teacher line per teacher fp32 row (one dash style each)."""
    colors = model_colors(rows)
    ys = list(range(len(ordered)))
    ax.barh(ys, [r.p50_ms for r in ordered], height=0.6, color=[colors[r.model] for r in ordered],
            xerr=p50_err(ordered), error_kw={"elinewidth": 1.2, "capsize": 3, "ecolor": "0.2"})  # fmt: skip
    ax.set_yticks(ys, [_label(r, rows) for r in ordered], fontsize=9)
    for y, r in zip(ys, ordered, strict=True):
        label = f"{fmt_p50(r)} ms" + (f"  unstable (±{r.influence * 100:.0f}%)" if r.unstable else "")
        end = r.p50_ci_ms[1] if r.p50_ci_ms else r.p50_ms  # right of the whisker
        ax.annotate(label, (end, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
    teachers = [r for r in rows if r.role == "teacher" and r.precision == "fp32"]
    for t, style in zip(teachers, itertools.cycle(["--", ":", "-."]), strict=False):
        label = f"teacher {t.format} fp32: {fmt_ms(t.p50_ms)} ms"
        ax.axvline(t.p50_ms, color=TEACHER_COLOR, linestyle=style, linewidth=1.4, label=label)


def _bars(rows: list[ReportRow], path: Path, *, dpi: int) -> Path:
    """Horizontal p50 bars (log x), fastest on top, with the teacher's p50 as vertical lines."""
    ordered = sorted(rows, key=lambda r: -r.p50_ms)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.42 * len(ordered)))
    try:
        _draw_bars(ax, ordered, rows)
        ax.set_xscale("log")
        lo, hi = min(r.p50_ms for r in rows), max(r.p50_ms for r in rows)
        ax.set_xlim(lo / 1.6, hi * 6)  # room on the right for the value labels
        log_axis(ax.xaxis)
        ax.set_xlabel("p50 latency per batch (ms, log scale)", fontsize=11)
        ax.set_title(f"{_title(rows)}: {_CAPTIONS['latency']}", fontsize=12)
        ax.grid(True, axis="x", which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def save_target_plots(rows: list[ReportRow], out_dir: Path, *, dpi: int = 150) -> dict[str, list[Path]]:
    """Write three PNGs per target into `out_dir`; return their paths keyed by target name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots: dict[str, list[Path]] = {}
    used: set[str] = set()
    for name in dict.fromkeys(r.target_name for r in rows):
        slug, n = target_slug(name), 2
        while slug in used:  # two names with the same slug ('a b', 'a-b') still get their own files
            slug, n = f"{target_slug(name)}-{n}", n + 1
        used.add(slug)
        trows = [r for r in rows if r.target_name == name]
        plots[name] = [
            _front_plot(trows, out_dir / f"accuracy_latency_{slug}.png", "accuracy_latency", dpi=dpi),
            _front_plot(trows, out_dir / f"accuracy_size_{slug}.png", "accuracy_size", dpi=dpi),
            _bars(trows, out_dir / f"latency_{slug}.png", dpi=dpi),
        ]
    return plots
