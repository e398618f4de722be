"""One run directory → its latest records, rows and measurement context (shared by report and compare)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks.records import BenchRecord, latest_rounds
from toolkit.report.inputs import read_manifest, read_results, read_summary
from toolkit.report.markdown import ReportContext, build_context
from toolkit.report.rows import ReportRow, build_rows
from toolkit.rundir import RunDir

__all__ = ["RunData", "load_run"]


@dataclass(frozen=True)
class RunData:
    """A run's latest rounds per configuration, its rows and context; `superseded` older records left out."""

    run_dir: Path
    records: list[BenchRecord]
    rows: list[ReportRow]
    context: ReportContext
    superseded: int


def load_run(run_dir: Path) -> RunData:
    """Read results, manifest and (optional) training summary of `run_dir`; for each configuration the
    rounds of its latest `edgekd bench` call count."""
    run = RunDir(run_dir)
    records, superseded = latest_rounds(read_results(run.results))
    rows = build_rows(records, read_manifest(run.manifest))
    ctx = build_context(records, read_summary(run.summary), superseded=superseded)
    return RunData(run_dir=run.root, records=records, rows=rows, context=ctx, superseded=superseded)
