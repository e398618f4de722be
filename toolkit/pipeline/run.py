"""The `run` sequence, once: distill, export, bench, profile and report on one run directory. `edgekd run`
and each sweep trial call it; a failed export or benchmark does not stop the stages after it."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import EdgekdError
from toolkit.rundir import RunDir

if TYPE_CHECKING:
    from benchmarks.manifest import Manifest
    from toolkit.config import BenchSettings, RunConfig
    from toolkit.pipeline.bench_stage import BenchOutcome
    from toolkit.rundir.summary import DistillSummary

__all__ = ["RunHooks", "RunOutcome", "prepare_run", "run_pipeline"]


class RunHooks:
    """What a caller sees of a run (the library prints nothing): each stage runs inside `stage(name)`, the
    `on_*` callbacks are the stages' own, and each other method gets one stage's value. Override any."""

    on_step: Callable[..., None] | None = None  # distill: (model, done, total, metrics) per batch
    on_file: Callable[..., None] | None = None  # export: (model, format, precision, entry) per file
    on_result: Callable[..., None] | None = None  # bench: (record) per configuration measured

    def stage(self, name: str) -> AbstractContextManager:
        """The context stage `name` (distill, export, bench, profile, report) runs in."""
        return nullcontext()

    def distilled(self, summary: DistillSummary) -> None:
        """The distill summary."""

    def exported(self, manifest: Manifest) -> None:
        """The bundle's manifest, failures included."""

    def benched(self, outcome: BenchOutcome) -> None:
        """What the benchmark measured and where it wrote it."""

    def profiled(self, path: Path) -> None:
        """The profiles.json written (profile.md beside it)."""

    def profile_skipped(self, error: Exception) -> None:
        """Why there is no profile: a warning, the report goes on without it."""

    def reported(self, result: Any) -> None:
        """The report written (`toolkit.report.build_report`'s value)."""


@dataclass
class RunOutcome:
    """What `run_pipeline` did: each stage's value (None: skipped) and the failures, export's first."""

    run: RunDir
    summary: DistillSummary
    manifest: Manifest
    bench: BenchOutcome
    profile: Path | None = None
    report: Any = None
    failures: list[EdgekdError] = field(default_factory=list)


def prepare_run(cfg: RunConfig, run_dir: Path, *, resume: bool = False) -> RunDir:
    """`run_dir` with `cfg` saved in it; resuming, it must be the config the run started with."""
    from toolkit.config import load_config, save_config

    run = RunDir(run_dir)
    if resume and run.config.is_file() and load_config(run.config) != cfg:
        raise EdgekdError(
            f"{run.config}: the run started with another config; resume with that one, or drop --resume"
        )
    run.root.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run.config)
    return run


def run_pipeline(
    cfg: RunConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    rotate: bool = True,
    profile: bool = True,
    report: bool = True,
    hooks: RunHooks | None = None,
) -> RunOutcome:
    """Distill, export, bench, then (unless turned off) profile and report `run_dir`, after `prepare_run`.
    A fresh run first moves an earlier results.jsonl aside, unless `rotate` is False (it appends then)."""
    from toolkit.pipeline.bench_stage import rotate_results

    hooks = hooks or RunHooks()
    run = prepare_run(cfg, run_dir, resume=resume)
    # A fresh run measures afresh (a later --resume must not count older rounds as done); the earlier
    # measurements are kept beside it.
    if rotate and not resume:
        rotate_results(run.results)
    summary = _distill(cfg, run, hooks, resume=resume)
    manifest, export_failed = _export(run, hooks, resume=resume)  # files that did export are still measured
    bench, bench_failed = _bench(run, hooks, resume=resume)
    failures = [f for f in (export_failed, bench_failed) if f is not None]
    outcome = RunOutcome(run, summary, manifest, bench, failures=failures)
    if profile:
        outcome.profile = _profile(run, cfg.bench, hooks)
    if report:
        outcome.report = _report(run, hooks)
    return outcome


def _distill(cfg: RunConfig, run: RunDir, hooks: RunHooks, *, resume: bool) -> DistillSummary:
    from toolkit.pipeline.distill_stage import run_distill

    with hooks.stage("distill"):
        summary = run_distill(cfg, run, on_step=hooks.on_step, resume=resume)
    hooks.distilled(summary)
    return summary


def _export(run: RunDir, hooks: RunHooks, *, resume: bool) -> tuple[Manifest, EdgekdError | None]:
    from toolkit.pipeline.export_stage import export_failure, run_export

    with hooks.stage("export"):
        manifest = run_export(run, on_file=hooks.on_file, resume=resume)
    hooks.exported(manifest)
    return manifest, export_failure(run.bundle, manifest.failures)


def _bench(run: RunDir, hooks: RunHooks, *, resume: bool) -> tuple[BenchOutcome, EdgekdError | None]:
    from toolkit.pipeline.bench_stage import bench_failure, run_bench

    with hooks.stage("bench"):
        outcome = run_bench(run.root, on_result=hooks.on_result, resume=resume)
    hooks.benched(outcome)
    return outcome, bench_failure(outcome)


def _profile(run: RunDir, bench: BenchSettings, hooks: RunHooks) -> Path | None:
    """The run's profile for the report, at the bench's first thread count; a failure is only a warning."""
    from toolkit.pipeline.profile_stage import run_profile

    if not bench.profile_runs or not run.manifest.is_file():
        return None
    with hooks.stage("profile"):
        try:
            path, _ = run_profile(run.bundle, threads=bench.threads[0], runs=bench.profile_runs)
        except (ValueError, RuntimeError, OSError) as exc:
            hooks.profile_skipped(exc)
            return None
    hooks.profiled(path)
    return path


def _report(run: RunDir, hooks: RunHooks) -> Any:
    from toolkit.pipeline.report_stage import run_report

    with hooks.stage("report"):
        result = run_report(run.root)
    hooks.reported(result)
    return result
