"""Profiles → PNG: a horizontal bar per timed file of the chosen models, split by kind of work (µs/run), with
the unprofiled p50 marked, so an int8 file's conv time and its Q/DQ cost read off beside its fp32 twin."""

from __future__ import annotations

from pathlib import Path

from benchmarks.files import atomic_path
from benchmarks.profile import ProfileFile
from toolkit.report.plot import pyplot
from toolkit.report.time_breakdown import KINDS, breakdown

__all__ = ["save_profile_plot"]

_COLORS = {"conv/matmul": "tab:blue", "quantize/dequantize": "tab:red", "cast": "tab:orange",
           "layout": "tab:purple", "other": "tab:gray"}  # fmt: skip


def save_profile_plot(data: ProfileFile, models: list[str], path: Path) -> Path | None:
    """The bars of `models`' timed files (one panel per model, its own scale); None when none is timed."""
    chosen = [m for m in models if any(p.timed and p.model == m for p in data.profiles)]
    if not chosen:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(len(chosen), 1, figsize=(8, 1.2 + 2.4 * len(chosen)), squeeze=False)
    for ax, model in zip(axes[:, 0], chosen, strict=True):
        files = [p for p in data.profiles if p.timed and p.model == model]
        names = [f"{p.format} {p.precision} ({p.backend})" for p in files]
        left = [0.0] * len(files)
        for kind in KINDS:
            widths = [breakdown(p).us[kind] for p in files]
            ax.barh(names, widths, left=left, color=_COLORS[kind], label=kind)
            left = [a + b for a, b in zip(left, widths, strict=True)]
        ax.scatter(
            [p.p50_us for p in files], names, marker="|", s=300, color="black", label="p50 (unprofiled)"
        )
        ax.invert_yaxis()
        ax.set_title(f"{model}: per-op time (µs per run)", fontsize=10)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    top = dict(loc="upper center", bbox_to_anchor=(0.5, 1), ncol=6, fontsize=7, frameon=False)
    fig.legend(handles, labels, **top)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
