"""Stage 4: the report of one run (report.md/.html, results.csv, plots), or several runs side by side."""

from __future__ import annotations

from pathlib import Path

from toolkit.errors import EdgekdError
from toolkit.rundir import RunDir

__all__ = ["run_report", "run_compare"]


def run_report(run_dir: Path, *, out: Path | None = None, max_accuracy_drop: float = 1.0):
    """Write RUN/report (or `out`) from the run's records, manifest and training summary."""
    from toolkit.report import build_report

    return build_report(run_dir, out_dir=out, max_accuracy_drop=max_accuracy_drop)


def run_compare(
    run_dirs: list[Path], *, out: Path | None = None, max_slowdown_pct: float | None = None
) -> tuple[Path, list, EdgekdError | None]:
    """compare.md/.html of two or more runs, targets side by side (default: in the first run's report);
    with `max_slowdown_pct`, also the regression gate on the same loaded runs: (path, regressions, the
    error to exit with or None)."""
    from toolkit.report.compare import write_compare_report
    from toolkit.report.run import load_run

    if len(run_dirs) < 2:
        raise EdgekdError(f"{run_dirs[0]}: --compare needs two or more run directories")
    runs = [load_run(d) for d in run_dirs]
    path = write_compare_report(runs, out_dir=out or RunDir(run_dirs[0]).report)
    if max_slowdown_pct is None:
        return path, [], None
    return (path, *_regression_gate(runs, run_dirs, max_slowdown_pct=max_slowdown_pct))


def _regression_gate(
    runs, run_dirs: list[Path], *, max_slowdown_pct: float
) -> tuple[list, EdgekdError | None]:
    """(regressions, the error to exit with): a later run's row significantly slower than the first run's
    same row by more than `max_slowdown_pct`, or no row that could be tested (a gate that checks nothing
    fails: no match, or one round a side)."""
    from toolkit.report.compare import find_regressions

    found, matched, tested = find_regressions(runs, max_slowdown_pct=max_slowdown_pct)
    if not matched:
        return found, EdgekdError(
            f"{run_dirs[1]}: no benchmarked configuration matches one of {run_dirs[0]} (same file, threads, "
            "batch, streams and target), so no regression could be checked"
        )
    if not tested:
        return found, EdgekdError(
            f"{run_dirs[1]}: {matched} configurations match {run_dirs[0]}, but each has one round on a side, "
            "so none could be tested (edgekd bench --repeats 2 or more)"
        )
    if found:
        slow = ", ".join(str(d) for d in dict.fromkeys(r.run_dir for r in found))
        return found, EdgekdError(
            f"{slow}: {len(found)} of {tested} tested configurations significantly slower than in "
            f"{run_dirs[0]} by more than {max_slowdown_pct:g}%"
        )
    return found, None
