"""Rows → PNG: accuracy against p50 latency, one marker per row, marker area growing with file size."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from benchmarks.files import atomic_path
from toolkit.report.rows import ReportRow

__all__ = ["save_plot", "pyplot", "log_axis", "model_colors", "format_markers", "TEACHER_COLOR"]

TEACHER_COLOR = "tab:red"
_STUDENT_COLORS = ["tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:cyan", "tab:olive"]
_FORMAT_MARKERS = {"onnx": "o", "tflite": "s"}
_OTHER_MARKERS = ["^", "D", "v", "P"]
_MIN_AREA, _MAX_AREA = 40.0, 600.0  # pt², so the smallest file stays visible and the largest stays readable


def model_colors(rows: list[ReportRow]) -> dict[str, str]:
    """One color per model; teachers always get the teacher color."""
    colors: dict[str, str] = {}
    students = sorted({r.model for r in rows if r.role != "teacher"})
    for i, model in enumerate(students):
        colors[model] = _STUDENT_COLORS[i % len(_STUDENT_COLORS)]
    colors.update({r.model: TEACHER_COLOR for r in rows if r.role == "teacher"})
    return colors


def format_markers(rows: list[ReportRow]) -> dict[str, str]:
    """One marker shape per format."""
    others = sorted({r.format for r in rows} - _FORMAT_MARKERS.keys())
    extra = {fmt: _OTHER_MARKERS[i % len(_OTHER_MARKERS)] for i, fmt in enumerate(others)}
    return {**_FORMAT_MARKERS, **extra}


def _area(size: int | None, largest: int) -> float:
    """Marker area from file size, square-root scaled so a 100× smaller file is still a visible dot."""
    if not size or not largest:
        return _MIN_AREA
    return _MIN_AREA + (_MAX_AREA - _MIN_AREA) * math.sqrt(size / largest)


def _label(row: ReportRow, many_threads: bool) -> str:
    """Point label: model/format/precision, plus threads and target when they tell points apart."""
    label = f"{row.model}/{row.format}/{row.precision}"
    if many_threads:
        label += f"/{row.threads}t"
    return label if row.target_kind == "native" else f"{label} [{row.target_label or row.target_kind}]"


def _draw_points(ax: Any, rows: list[ReportRow]) -> list[ReportRow]:
    """Scatter and label every row that has an accuracy; return those rows."""
    points = [r for r in rows if r.accuracy is not None]
    colors, markers = model_colors(rows), format_markers(rows)
    largest = max((r.size_bytes or 0 for r in rows), default=0)
    many_threads = len({r.threads for r in points}) > 1
    for r in points:
        color = colors[r.model]
        face = color if r.target_kind == "native" else "none"  # hollow = not measured natively
        xy = (r.p50_ms, r.accuracy * 100)
        if r.p50_ci_ms is not None:  # the p50's 95 % interval, so two close points read as close
            low, high = r.p50_ci_ms
            ax.errorbar(*xy, xerr=[[r.p50_ms - low], [high - r.p50_ms]], fmt="none", ecolor=color,
                        elinewidth=1.0, capsize=3, alpha=0.8, zorder=2)  # fmt: skip
        ax.scatter(
            *xy,
            s=_area(r.size_bytes, largest),
            marker=markers[r.format],
            facecolors=face,
            edgecolors=color,
            alpha=0.8,
            linewidths=1.5,
            zorder=3,
        )
        if "lat" in r.pareto.split("+"):  # label the latency front only: the other labels would overlap
            off = math.sqrt(_area(r.size_bytes, largest)) / 2 + 3  # clear of the marker, whatever its size
            ax.annotate(
                _label(r, many_threads), xy, xytext=(off, off), textcoords="offset points", fontsize=8
            )
    if not points:
        ax.text(0.5, 0.5, "no row has an accuracy", ha="center", va="center", transform=ax.transAxes)
    return points


def _legend_handles(rows: list[ReportRow], points: list[ReportRow]) -> list[Any]:
    """Legend entries: one color per model, one shape per format, hollow for non-native targets."""
    from matplotlib.lines import Line2D

    colors, markers = model_colors(rows), format_markers(rows)
    handles = [Line2D([], [], marker="o", linestyle="", color=c, label=m) for m, c in colors.items()]
    handles += [
        Line2D([], [], marker=markers[f], linestyle="", color="gray", label=f)
        for f in sorted({r.format for r in points})
    ]
    if any(r.target_kind != "native" for r in points):
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                linestyle="",
                markerfacecolor="none",
                color="gray",
                label="non-native target",
            )
        )
    return handles


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend: files only, never a window, no display needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def log_axis(axis: Any) -> None:
    """Log scale ticked at 1-2-5 steps and labelled in plain numbers (0.05, not 5×10⁻²)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def save_plot(rows: list[ReportRow], path: Path, *, dpi: int = 150) -> Path:
    """Write accuracy (%) vs p50 latency (log x) as a PNG at `path`; rows without accuracy are left out."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 6))
    try:
        points = _draw_points(ax, rows)
        ax.set_xscale("log")
        log_axis(ax.xaxis)
        ax.set_xlabel("p50 latency per batch (ms, log scale)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(
            "All targets: accuracy vs p50 latency (marker area ∝ √file size, latency front labelled)"
        )
        ax.grid(True, which="both", alpha=0.3)
        handles = _legend_handles(rows, points)
        if handles:
            ax.legend(handles=handles, loc="best", fontsize=8)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
