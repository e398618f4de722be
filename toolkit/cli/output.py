"""Everything the CLI shows: rich tables and one-line summaries, fed by library return values."""

from __future__ import annotations

from rich.table import Table

from toolkit.cli._progress import console
from toolkit.report.recommend import recommendation_text

__all__ = [
    "distill_summary",
    "exported_file",
    "parity_table",
    "bench_row",
    "report_written",
    "compare_written",
]


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


def distill_summary(summary: dict) -> None:
    table = Table(title="Distillation (test split)")
    for col in ("model", "arch", "params", "epochs", "train s", "val acc", "test acc"):
        table.add_column(col, justify="left" if col in ("model", "arch") else "right")
    for name in ("teacher", "student_kd", "student_scratch"):
        if name in summary:
            s = summary[name]
            secs = "reused" if s.get("reused") else f"{s['train_seconds']:.0f}"
            table.add_row(
                name,
                s["arch"],
                f"{s['params']:,}",
                str(s["epochs"]),
                secs,
                _pct(s["val_accuracy"]),
                _pct(s["test_accuracy"]),
            )
    console.print(table)


def exported_file(name: str, fmt: str, precision: str, entry: dict) -> None:
    if "error" in entry:
        console.print(f"[red]FAILED[/red] {name} {fmt} {precision}: {entry['error']}", highlight=False)
    else:
        ok = "[green]ok[/green]" if entry["parity"]["passed"] else "[red]PARITY FAILED[/red]"
        console.print(
            f"exported {entry['file']:<28} {entry['size_bytes'] / 1024:9.1f} KiB  {ok}", highlight=False
        )


def parity_table(manifest: dict) -> None:
    table = Table(title="Parity against torch (test split)")
    for col in ("file", "max |diff|", "mean |diff|", "top-1 agree", "accuracy", "torch acc", "check"):
        table.add_column(col, justify="left" if col == "file" else "right")
    for m in manifest["models"]:
        p = m["parity"]
        check = "[green]pass[/green]" if p["passed"] else "[red]FAIL[/red]"
        table.add_row(
            m["file"],
            f"{p['max_abs_diff']:.2e}",
            f"{p['mean_abs_diff']:.2e}",
            _pct(p["top1_agreement"]),
            _pct(p["accuracy"]),
            _pct(p["torch_accuracy"]),
            check,
        )
    console.print(table)


def bench_row(record) -> None:
    lat = record.latency
    console.print(
        f"{record.model:<16} {record.format:<6} {record.precision:<5} {record.backend:<11} "
        f"t={record.threads} "
        f"p50 {lat.p50:8.4f} ms  p99 {lat.p99:8.4f} ms  {record.throughput_ips:9.0f} img/s  "
        f"peak {record.peak_rss_mb:6.1f} MB  acc {_pct(record.accuracy)}",
        highlight=False,
    )


def bench_done(done, results) -> None:
    for line in done.skipped:
        console.print(f"[yellow]SKIPPED[/yellow] {line}", highlight=False)
    for line in done.errors:
        console.print(f"[red]FAILED[/red] {line}", highlight=False)
    console.print(f"{len(done.records)} records appended to {results}", highlight=False)


def report_written(result) -> None:
    console.print(
        f"report: {result.markdown_path} (and {result.html_path.name}, "
        f"{len(result.plot_paths)} plots, results.csv)",
        highlight=False,
    )
    for rec in result.recommendations:
        console.print(recommendation_text(rec).replace("**", ""), highlight=False)


def compare_written(path) -> None:
    console.print(f"compare: {path} (and {path.with_suffix('.html').name})", highlight=False)
