"""Rows → Markdown: what was measured, the trade-off table, the plot, the best student and training."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from toolkit.report.rows import ReportRow

__all__ = ["ReportContext", "build_context", "to_markdown", "fmt_size"]

_DASH = "–"


@dataclass(frozen=True)
class ReportContext:
    """Facts about how the rows were measured, gathered from the records (plus the training summary)."""

    warmup: list[int] = field(default_factory=list)
    protocol: dict[str, list[Any]] = field(default_factory=dict)
    machines: list[str] = field(default_factory=list)
    runtimes: list[str] = field(default_factory=list)
    training: dict[str, dict[str, Any]] | None = None


def _distinct(values: list[Any]) -> list[Any]:
    """Values in first-seen order without repeats (works for unhashable values too)."""
    out: list[Any] = []
    for v in values:
        if v is not None and v not in out:
            out.append(v)
    return out


def build_context(
    records: list[dict[str, Any]], training: dict[str, dict[str, Any]] | None = None
) -> ReportContext:
    """Collect warm-up, protocol, machine and runtime facts from the records (distinct values, in order)."""
    protocol: dict[str, list[Any]] = {}
    for rec in records:
        for key, value in (rec.get("protocol") or {}).items():
            if value not in protocol.setdefault(key, []):
                protocol[key].append(value)
    machines = []
    for rec in records:
        m = rec.get("machine") or {}
        versions = {"python": m.get("python"), "numpy": (m.get("versions") or {}).get("numpy")}
        extras = ", ".join(f"{k} {v}" for k, v in versions.items() if v)
        cores = m.get("affinity_cores") or m.get("logical_cores") or "?"
        desc = f"{m.get('cpu_model') or 'unknown CPU'} ({cores} cores usable), {m.get('arch') or '?'}"
        machines.append(f"{desc}; {extras}" if extras else desc)
    runtimes = [f"{r['backend']} {r['runtime_version']}" for r in records if r.get("runtime_version")]
    return ReportContext(
        warmup=_distinct([r.get("warmup") for r in records]),
        protocol=protocol,
        machines=_distinct(machines),
        runtimes=_distinct(runtimes),
        training=training,
    )


def fmt_size(n: int | None) -> str:
    """Bytes as a readable size: MiB from 1 MiB up, KiB below."""
    if n is None:
        return _DASH
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def _fmt_ms(v: float) -> str:
    """Milliseconds with about three significant digits."""
    return f"{v:.3f}" if v < 10 else f"{v:.2f}" if v < 100 else f"{v:.1f}"


def _opt(v: Any, fmt: Callable[[Any], str]) -> str:
    """Format `v`, or a dash when it is missing."""
    return _DASH if v is None else fmt(v)


def _agreement(row: ReportRow) -> str:
    """Top-1 agreement with torch; a failed parity check is shouted."""
    text = _opt(row.top1_agreement, lambda a: f"{a * 100:.2f}%")
    return f"**FAILED** ({text})" if row.parity_passed is False else text


def _target(row: ReportRow) -> str:
    """'native', or the target's label so emulated/constrained rows stand out."""
    return "native" if row.target_kind == "native" else f"*{row.target_label or row.target_kind}*"


_COLUMNS: list[tuple[str, Callable[[ReportRow], str]]] = [
    ("Model", lambda r: f"**{r.model}**" if r.is_baseline else r.model),
    ("Format", lambda r: r.format),
    ("Precision", lambda r: r.precision),
    ("Backend", lambda r: r.backend),
    ("Threads", lambda r: str(r.threads)),
    ("Target", _target),
    ("Params", lambda r: _opt(r.params, lambda p: f"{p:,}")),
    ("Size", lambda r: fmt_size(r.size_bytes)),
    ("Acc %", lambda r: _opt(r.accuracy, lambda a: f"{a * 100:.2f}")),
    ("Top-1 agr.", _agreement),
    ("p50 ms", lambda r: _fmt_ms(r.p50_ms)),
    ("p90 ms", lambda r: _fmt_ms(r.p90_ms)),
    ("p99 ms", lambda r: _fmt_ms(r.p99_ms)),
    ("img/s", lambda r: _opt(r.throughput_ips, lambda t: f"{t:,.0f}")),
    ("Peak RSS MB", lambda r: _opt(r.peak_rss_mb, lambda m: f"{m:.1f}")),
    ("Speedup", lambda r: _opt(r.speedup, lambda s: f"{s:.2f}×")),
    ("Size ×", lambda r: _opt(r.size_ratio, lambda s: f"{s:.1f}×")),
    ("Δ acc (pts)", lambda r: _opt(r.accuracy_delta_pts, lambda d: f"{d:+.2f}")),
]


def _table(rows: list[ReportRow]) -> list[str]:
    """The Markdown table, one line per row, in the order given."""
    lines = ["| " + " | ".join(name for name, _ in _COLUMNS) + " |"]
    lines.append("|" + "|".join("---" if i < 6 else "---:" for i in range(len(_COLUMNS))) + "|")
    lines += ["| " + " | ".join(cell(row) for _, cell in _COLUMNS) + " |" for row in rows]
    return lines


def _measured(rows: list[ReportRow], ctx: ReportContext) -> str:
    """The paragraph saying how the numbers were measured."""
    warmup = "/".join(str(w) for w in ctx.warmup) or "?"
    protocol = ", ".join(f"`{k}`={'/'.join(map(str, v))}" for k, v in ctx.protocol.items())
    n_images = "/".join(str(n) for n in _distinct([r.n_accuracy for r in rows])) or "?"
    return (
        f"Each row is one exported file run by the benchmark harness: {warmup} warm-up runs, then timed runs"
        f"{f' ({protocol})' if protocol else ''}. Latency is wall time per batch in ms (p50/p90/p99); "
        f"throughput is images per second. Machine: {'; '.join(ctx.machines) or 'unknown'}. "
        f"Runtimes: {', '.join(ctx.runtimes) or 'unknown'}. "
        f"Accuracy measured on {n_images} held-out test images. Speedup, size × and Δ acc compare each "
        "row with the teacher fp32 row (**bold**) of the same format, backend, threads and target; "
        f"{_DASH} means no such row was benchmarked."
    )


def _best_student(rows: list[ReportRow]) -> str | None:
    """One line on the KD student's ONNX fp32 file vs the teacher, preferring a native target."""
    candidates = [
        r for r in rows if (r.model, r.format, r.precision) == ("student_kd", "onnx", "fp32") and r.speedup
    ]
    candidates.sort(key=lambda r: r.target_kind != "native")
    if not candidates:
        return None
    r = candidates[0]
    size = _opt(r.size_ratio, lambda s: f"{s:.1f}×")
    delta = _opt(r.accuracy_delta_pts, lambda d: f"{d:+.2f}")
    threads = f"{r.threads} thread{'s' if r.threads != 1 else ''}"
    return (
        f"**Best student:** student_kd (ONNX fp32, {r.backend}, {threads}, {_target(r)}) is "
        f"{r.speedup:.2f}× faster at p50, {size} smaller and {delta} accuracy points vs the teacher."
    )


def _training(training: dict[str, dict[str, Any]]) -> list[str]:
    """The Training section: torch test accuracy per model, and the KD gain over training from scratch."""
    lines = ["## Training", "", "| Model | Params | Test accuracy (torch) % |", "|---|---:|---:|"]
    for name, entry in training.items():
        acc = _opt(entry.get("test_accuracy"), lambda a: f"{a * 100:.2f}")
        lines.append(f"| {name} | {_opt(entry.get('params'), lambda p: f'{p:,}')} | {acc} |")
    kd, scratch = training.get("student_kd", {}), training.get("student_scratch", {})
    if kd.get("test_accuracy") is not None and scratch.get("test_accuracy") is not None:
        gain = (kd["test_accuracy"] - scratch["test_accuracy"]) * 100
        lines += ["", f"Distillation gain over the same student trained from scratch: {gain:+.2f} points."]
    return lines


def to_markdown(rows: list[ReportRow], ctx: ReportContext, *, plot_name: str | None = "tradeoff.png") -> str:
    """The whole report as Markdown; `plot_name` is embedded when given."""
    lines = ["# edgekd report: compression trade-off", "", _measured(rows, ctx), ""]
    failed = _distinct([f"{r.model} {r.format} {r.precision}" for r in rows if r.parity_passed is False])
    if failed:
        lines += [f"> **PARITY CHECK FAILED** for {', '.join(failed)}: outputs differ from torch.", ""]
    lines += _table(rows) + [""]
    if plot_name:
        lines += [f"![]({plot_name})", ""]
    best = _best_student(rows)
    if best:
        lines += [best, ""]
    if ctx.training:
        lines += _training(ctx.training) + [""]
    return "\n".join(lines)
