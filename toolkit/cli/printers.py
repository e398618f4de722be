"""What each stage prints when it is done, and the printer of `edgekd run`'s stages (its `RunHooks`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.markup import escape

from benchmarks.manifest import Manifest
from toolkit.cli import output
from toolkit.cli._progress import console, train_progress
from toolkit.errors import first_line
from toolkit.pipeline.run import RunHooks
from toolkit.rundir.summary import DistillSummary

__all__ = ["RunPrinter", "distilled", "benched"]


def distilled(summary: DistillSummary) -> None:
    """The distill summary, printed once (by rank 0 under torchrun)."""
    if int(os.environ.get("RANK", "0")) == 0:
        output.distill_summary(summary)


def benched(outcome) -> None:
    """The skipped and failed lines, notes and the table (one unreadable file: its error says it all)."""
    from toolkit.pipeline.bench_stage import lone_error

    if lone_error(outcome) is None:
        output.bench_done(outcome.done, outcome.results, outcome.csv, outcome.models / "manifest.json")


class RunPrinter(RunHooks):
    """`edgekd run` prints each stage as the stage's own command does."""

    on_file = staticmethod(output.exported_file)
    on_result = staticmethod(output.bench_row)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if name != "distill":
            yield
            return
        with train_progress() as self.on_step:
            yield

    def distilled(self, summary: DistillSummary) -> None:
        distilled(summary)

    def exported(self, manifest: Manifest) -> None:
        output.parity_table(manifest)

    def benched(self, outcome) -> None:
        benched(outcome)

    def profiled(self, path: Path) -> None:
        console.print(f"profiles: {path} (`edgekd profile` tables: {path.with_name('profile.md')})")

    def profile_skipped(self, error: Exception) -> None:
        console.print(f"[yellow]profile skipped:[/] {escape(first_line(error))}")

    def reported(self, result) -> None:
        output.report_written(result)
