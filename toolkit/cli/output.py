"""Everything the CLI shows: rich tables and one-line summaries, fed by library return values."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from benchmarks.manifest import Failure, FileSettings, Manifest, ModelEntry, QatRecord
from toolkit.cli._progress import console
from toolkit.rundir.summary import DistillSummary, EmbeddingsFile, ModelSummary

__all__ = [
    "distill_summary",
    "exported_file",
    "parity_table",
    "bench_row",
    "bench_table",
    "regressions",
    "bench_done",
    "report_written",
    "compare_written",
    "predictions",
]


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


def distill_summary(summary: DistillSummary) -> None:
    """Each model's row, KD vs scratch per seed, how encoder teachers got their embeddings, the warnings."""
    console.print(_models_table(summary.models))
    if (cmp := summary.kd_vs_scratch) is not None:
        seeds = ", ".join(
            f"seed {r.seed}: {_pct(r.student_kd)} vs {_pct(r.student_scratch)}" for r in cmp.per_seed
        )
        console.print(
            f"KD vs scratch over {len(cmp.per_seed)} seed(s): mean {_pct(cmp.mean_kd)} vs "
            f"{_pct(cmp.mean_scratch)} ({cmp.delta_points:+.2f} pts; KD better on {cmp.kd_wins}); {seeds}",
            highlight=False,
        )
    for name, m in summary.models.items():
        if m.embeddings:
            console.print(f"{name}: {_embeddings(m.embeddings)}", highlight=False)
    for warning in summary.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)


_MODEL_COLUMNS = ("model", "arch", "params", "seed", "epochs", "train s", "targets", "val acc", "test acc")


def _models_table(models: dict[str, ModelSummary]) -> Table:
    table = Table(title="Distillation (test split)")
    for col in (*_MODEL_COLUMNS, "top-5", "ECE"):
        table.add_column(col, justify="left" if col in ("model", "arch", "targets") else "right")
    for name, m in models.items():
        secs = "reused" if m.reused else ("loaded" if m.loaded else _whole(m.train_seconds))
        ece = m.test.get("ece")
        table.add_row(
            name,
            m.arch,
            f"{m.params:,}",
            _dash(m.seed),
            _dash(m.epochs),
            secs,
            m.teacher_targets or "–",
            _pct(m.val_accuracy),
            _pct(m.test_accuracy),
            _pct(m.test.get("top5")),
            "–" if ece is None else f"{ece:.4f}",
        )
    return table


def _dash(x: object) -> str:
    return "–" if x is None else str(x)


def _whole(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds:.0f}"


def _embeddings(splits: dict[str, EmbeddingsFile]) -> str:
    """How a frozen-encoder teacher got its sentence embeddings, split by split."""
    parts = [
        f"{split} " + ("read from cache" if e.seconds is None else f"computed in {e.seconds:.0f} s")
        for split, e in splits.items()
    ]
    folder = Path(next(iter(splits.values())).path).parent
    return f"sentence embeddings {', '.join(parts)} ({escape(str(folder))})"


def exported_file(name: str, fmt: str, precision: str, entry: ModelEntry | Failure) -> None:
    if isinstance(entry, Failure):
        console.print(f"[red]FAILED[/red] {name} {fmt} {precision}: {entry.error}", highlight=False)
    else:
        ok = "[green]ok[/green]" if entry.parity.passed else "[red]PARITY FAILED[/red]"
        console.print(f"exported {entry.file:<28} {entry.size_bytes / 1024:9.1f} KiB  {ok}", highlight=False)
        if line := _qat_line(entry.quantization.qat if entry.quantization else None):
            console.print(f"  {line}", highlight=False)


def _qat_line(qat: QatRecord | None) -> str:
    """What post-training int8 cost on the validation split, and what quantization-aware distillation did."""
    if not qat or not (qat.over_budget or qat.ran):
        return ""
    ptq = f"post-training int8 {0.0 - qat.ptq_drop_pts:+.2f} pts vs fp32 on the validation split"
    if not qat.ran:
        return f"{ptq}, over the {qat.budget_pts} pt budget (export.qat.when: over-budget distills it again)"
    qat_pts = 100 * (qat.qat_accuracy - qat.fp32_accuracy)
    return (f"{ptq}; QAT-KD ({qat.epochs} epochs, {qat.seconds:.0f} s) {qat_pts:+.2f} pts; "
            f"shipped {qat.shipped}")  # fmt: skip


def _quant_cell(m: ModelEntry) -> str:
    if m.precision == "fp32":
        return "–"
    q = m.quantization or FileSettings()
    parts = [q.mode or "", q.format or ""]
    if q.per_channel is not None:
        parts.append("per-channel" if q.per_channel else "per-tensor")
    if q.io:
        parts.append(f"{q.io} I/O")
    if q.reduce_range:
        parts.append("7-bit weights")
    if q.qat is not None and q.qat.shipped == "qat-kd":
        parts.append("QAT-KD")
    if q.accuracy_budget is not None and q.accuracy_budget.kept_float:
        parts.append(f"{len(q.accuracy_budget.kept_float)} layer(s) float")
    return " ".join(p for p in parts if p)


def parity_table(manifest: Manifest, *, reference: str = "torch") -> None:
    """One row per file: size vs its fp32 sibling, output diffs, agreement, accuracy, runtimes, pass/fail."""
    fp32 = {(m.name, m.format): m for m in manifest.models if m.precision == "fp32"}
    table = Table(title=f"Parity against {reference} (test split)")
    cols = (
        "file",
        "precision",
        "quantization",
        "KiB",
        "× smaller",
        "max |diff|",
        "mean |diff|",
        "top-1 agree",
        "accuracy",
        f"Δ vs {reference} (pts)",
        "tflite_runtime",
        "check",
    )
    for col in cols:
        table.add_column(
            col, justify="left" if col in ("file", "precision", "quantization", "tflite_runtime") else "right"
        )
    for m in manifest.models:
        p = m.parity
        base = fp32.get((m.name, m.format))
        ratio = f"{base.size_bytes / m.size_bytes:.2f}×" if base and m is not base else "–"
        check = "[green]pass[/green]" if p.passed else "[red]FAIL[/red]"
        table.add_row(
            m.file,
            m.precision,
            _quant_cell(m),
            f"{m.size_bytes / 1024:.1f}",
            ratio,
            f"{p.max_abs_diff:.2e}",
            f"{p.mean_abs_diff:.2e}",
            _pct(p.top1_agreement),
            _pct(p.accuracy),
            _delta_pts(p.accuracy, p.torch_accuracy),
            p.runtimes.get("tflite_runtime", "–"),
            check,
        )
    console.print(table)
    for m in manifest.models:
        sens = m.quantization.sensitivity if m.quantization else None
        if sens and sens.layers:
            t = Table(title=f"int8 sensitivity of {m.file} (each layer quantized alone, validation split)")
            for col in ("layer", "op", "accuracy", "drop (pts)"):
                t.add_column(col, justify="left" if col in ("layer", "op") else "right")
            for r in sens.layers:
                t.add_row(r.node, r.op_type, _pct(r.accuracy), f"{r.drop:+.2f}")
            console.print(t)


def _delta_pts(accuracy: float, reference: float | None) -> str:
    return "–" if reference is None else f"{100 * (accuracy - reference):+.2f}"


def record_line(record) -> None:
    """`bench --stream`: the record as one JSON line on stdout (for a remote runner), its row on stderr."""
    import json
    import sys

    sys.stdout.write(json.dumps(record.to_dict(), sort_keys=True) + "\n")
    sys.stdout.flush()
    bench_row(record)


def board_line(board: str, event: str) -> None:
    """One progress line of a remote board: `[pi-4] 12 records`, `[pi-4] pushing bundle`, ..."""
    console.print(f"[bold]\\[{board}][/bold] {event}", highlight=False)


def boards_table(runs: list) -> None:
    """The remote boards at the end: address, records received, time, and the error of any that failed."""
    table = Table(title="Boards")
    for col in ("board", "address", "records", "seconds", "status"):
        table.add_column(col, justify="right" if col in ("records", "seconds") else "left")
    for r in runs:
        status = "[green]ok[/green]" if r.error is None else f"[red]{r.error}[/red]"
        table.add_row(r.board.name, r.board.address, str(r.records), f"{r.seconds:.0f}", status)
    console.print(table)


def bench_row(record) -> None:
    lat = record.latency
    noisy = " [yellow]high CV[/yellow]" if lat.cv_high else ""
    console.print(
        f"{record.model:<16} {record.format:<6} {record.precision:<5} {record.backend:<11} "
        f"t={record.threads} b={record.batch_size} s={record.streams} r={record.round}  "
        f"p50 {lat.p50:8.4f} ms  p99 {lat.p99:8.4f} ms  {record.throughput_ips:9.0f} img/s  "
        f"peak {_num(record.peak_rss_mb, '.1f')} MB  acc {_pct(record.accuracy)}{noisy}",
        highlight=False,
    )


def _num(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def accuracy_budgets(manifest: Manifest) -> None:
    """A line per file exported within an accuracy budget: its accuracy, the drop, the layers kept float."""
    from toolkit.pipeline.export_stage import accuracy_budgets as budgets

    for entry, b in budgets(manifest):
        console.print(
            f"{entry.file}: accuracy {100 * b.accuracy:.2f}% vs {100 * b.fp32_accuracy:.2f}% float "
            f"(drop {b.drop:.2f} points, limit {b.max_accuracy_drop:g}); kept float: "
            f"{', '.join(b.kept_float) or 'none'}",
            highlight=False,
        )


def bench_table(records: list, manifest_path: Path) -> None:
    """Measured configurations, rounds pooled, with speedup and size against the teacher fp32 row of the same
    setup; unstable or bimodal rounds flagged."""
    from toolkit.report import bench_table as build

    built = build(records, manifest_path)
    table = Table(
        title="Benchmark (rounds pooled: p50 = median of the rounds' p50s, [95% CI]; "
        "speedup = teacher p50 / p50, same format, threads, batch, streams)"
    )
    for i, col in enumerate(built.headers):
        table.add_column(col, justify="left" if i < 4 else "right")
    for cells, baseline in zip(built.rows, built.baseline, strict=True):
        table.add_row(*([f"[bold]{cells[0]}[/bold]", *cells[1:]] if baseline else cells))
    # Piped into a log, the console is 80 columns wide and would squeeze 15 columns into ellipses.
    wide = console if console.is_terminal else Console(stderr=True, width=max(console.width, 200))
    wide.print(table)
    for label in built.targets:
        console.print(f"target: {label}", highlight=False)
    if not built.tested:
        console.print("speedups not tested for significance here (no scipy: `edgekd report` does it)")


def _notes(records: list) -> dict[str, list[str]]:
    """Each distinct note with the files it applies to."""
    notes: dict[str, list[str]] = {}
    for rec in records:
        for note in rec.notes:
            if note.startswith("accuracy measured once"):
                note = "accuracy measured once per file and backend, copied into its other configurations"
            files = notes.setdefault(note, [])
            if Path(rec.file).name not in files:
                files.append(Path(rec.file).name)
    return notes


def bench_done(done, results: Path, csv_path: Path | None, manifest_path: Path) -> None:
    for line in dict.fromkeys(done.skipped):
        console.print(f"[yellow]SKIPPED[/yellow] {line}", highlight=False)
    for line in done.errors:
        console.print(f"[red]FAILED[/red] {line}", highlight=False)
    for note, files in _notes(done.records).items():
        console.print(f"[cyan]note[/cyan] {note}: {', '.join(files)}", highlight=False)
    if done.records:
        bench_table(done.records, manifest_path)
    csv_text = f" (table: {csv_path})" if csv_path is not None else ""
    console.print(f"{len(done.records)} records appended to {results}{csv_text}", highlight=False)


def report_written(result) -> None:
    console.print(
        f"report: {result.markdown_path} (and {result.html_path.name}, "
        f"{len(result.plot_paths)} plots, results.csv)",
        highlight=False,
    )
    from toolkit.report import recommendation_text

    for rec in result.recommendations:
        console.print(recommendation_text(rec).replace("**", ""), highlight=False)


def profiled(profile) -> None:
    ops = f"{len(profile.ops)} ops" + ("" if profile.timed else ", untimed")
    name = Path(profile.path).name
    console.print(f"profiled {name} ({profile.backend}): p50 {profile.p50_us:.1f} µs, {ops}")


def profile_written(path: Path, markdown: str) -> None:
    from rich.markdown import Markdown

    console.print(Markdown(markdown))
    console.print(f"profiles: {path}  (tables: {path.with_name('profile.md')})")


def board_profiles(done: list) -> None:
    """Each board's profile tables (a failed board's line came with its events)."""
    from rich.markdown import Markdown

    for _, markdown in done:
        if markdown is not None:
            console.print(Markdown(markdown))


def compare_written(path) -> None:
    console.print(f"compare: {path} (and {path.with_suffix('.html').name})", highlight=False)


def regressions(found: list) -> None:
    """One line per configuration the regression gate caught."""
    for regression in found:
        console.print(f"regression: {regression.text()}", highlight=False)


def predictions(result, *, as_json: bool = False) -> None:
    """`edgekd predict` on stdout: one JSON document, or a table of each image's top-1 and runners-up."""
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
        return
    table = Table(title=escape(f"{result.file} ({result.backend})"))
    first = result.predictions[0].kind if result.predictions else "image"
    for col in (first, "top-1", "prob", "next"):
        table.add_column(col, justify="right" if col == "prob" else "left")
    for p in result.predictions:
        best, *rest = p.top
        others = ", ".join(f"{t.label} ({t.probability:.3f})" for t in rest)
        # escaped: paths and labels are text, a `[...]` in them is not markup
        table.add_row(escape(p.image), escape(best.label), f"{best.probability:.3f}", escape(others))
    # stdout: the predictions are the command's result (other commands' log lines go to stderr)
    out = Console(soft_wrap=True, highlight=False, emoji=False, width=None if sys.stdout.isatty() else 200)
    out.print(table)


def _params(params: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _below(drop: float) -> str:
    return f"{abs(drop) * 100:.2f} pts {'below' if drop >= 0 else 'above'}"


def sweep_trial(result, ran: bool, front: list) -> None:
    """One line per trial as it finishes (or is found finished), then the front so far."""
    r = result
    how = "" if ran else " (finished before)"
    console.print(
        f"[bold]{r.trial}[/bold] {escape(_params(r.params))}: {r.file} {r.accuracy * 100:.2f} % "
        f"({_below(r.teacher_accuracy - r.accuracy)} the teacher), p50 {r.p50_ms:.4f} ms "
        f"({r.teacher_p50_ms / r.p50_ms:.1f}× faster), {r.size_bytes / 1024:.1f} KiB, {r.seconds:.0f} s{how}",
        highlight=False,
    )
    console.print(f"  front so far: {', '.join(t.trial for t in front)}", highlight=False)
