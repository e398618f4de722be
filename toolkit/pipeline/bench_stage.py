"""Stage 3: benchmark every file of a run's bundle (or any bundle, file or folder) on this machine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from benchmarks.bundle import BundleRun, run_suite
from benchmarks.records import BenchRecord, write_csv
from benchmarks.suite import Suite, load_suite
from toolkit.config import BenchSettings, load_config
from toolkit.errors import EdgekdError, InputError
from toolkit.rundir import RunDir

__all__ = [
    "BenchOutcome",
    "bench_failure",
    "bench_paths",
    "bench_suite",
    "lone_error",
    "rotate_results",
    "run_bench",
    "run_remote_bench",
]


@dataclass
class BenchOutcome:
    """What `run_bench` measured and where it wrote it."""

    done: BundleRun
    models: Path  # the bundle folder, file or folder that was measured
    results: Path  # the JSONL appended to
    csv: Path | None  # results.csv rewritten beside it


def bench_suite(run: RunDir | None, name: str | None, **overrides) -> Suite:
    """`name` (shipped or a YAML file), else the run's config `bench:` section, else the protocol defaults;
    `overrides` that are not None replace single fields."""
    if name is not None:
        base = load_suite(name)
    else:
        from_run = run is not None and run.config.exists()
        s = load_config(run.config).bench if from_run else BenchSettings()
        base = Suite(
            name="run-config" if from_run else "default",
            threads=list(s.threads),
            batch_sizes=[s.batch_size],
            warmup=s.warmup,
            min_runs=s.min_runs,
            min_time_s=s.min_time_s,
            repeats=s.repeats,
            pin=s.pin,
            accuracy=s.accuracy,
        )
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def rotate_results(results: Path) -> Path | None:
    """Move an earlier `results.jsonl` aside (`results-<mtime>.jsonl`), so a fresh run measures afresh."""
    if not results.exists():
        return None
    stamp = datetime.fromtimestamp(results.stat().st_mtime).strftime("%Y%m%dT%H%M%S")
    return results.rename(results.with_name(f"results-{stamp}.jsonl"))


def bench_paths(path: Path, results: Path | None) -> tuple[RunDir | None, Path, Path]:
    """(the run directory `path` is, if it is one; what to measure; the JSONL to append to): a run's
    bundle and RUN/bench/results.jsonl, else `path` itself and ./results.jsonl, unless `results` is given."""
    run = RunDir(path) if (path / "bundle").is_dir() else None
    models = run.bundle if run is not None else path
    return run, models, results or (run.results if run is not None else Path("results.jsonl"))


def run_bench(
    path: Path,
    *,
    suite: str | None = None,
    results: Path | None = None,
    shape: list[int] | None = None,
    on_result: Callable[[BenchRecord], None] | None = None,
    resume: bool = False,
    **overrides,
) -> BenchOutcome:
    """Benchmark a run directory's bundle, a bundle, a model file or a folder; append records to `results`
    (default RUN/bench/results.jsonl, else ./results.jsonl) and rewrite results.csv beside it. With
    `resume`, rounds already in `results` are not measured again."""
    run, models, results = bench_paths(path, results)
    chosen = bench_suite(run, suite, **overrides)
    if results.suffix == ".csv":
        raise InputError(f"{results}: --results is the JSONL file; results.csv is written beside it")
    done = run_suite(models, results, chosen, shape=shape, on_result=on_result, resume=resume)
    csv_path = write_csv(results, results.with_suffix(".csv")) if results.exists() else None
    return BenchOutcome(done=done, models=models, results=results, csv=csv_path)


def lone_error(outcome: BenchOutcome) -> str | None:
    """The error of the one file that could not be read, when nothing was measured or skipped: the whole
    story."""
    done = outcome.done
    if not done.records and not done.skipped and len(done.errors) == 1:
        return done.errors[0]
    return None


def bench_failure(outcome: BenchOutcome) -> EdgekdError | None:
    """The error to exit with when a file failed to benchmark (its records and the others' are kept), or
    the `lone_error` itself."""
    if (error := lone_error(outcome)) is not None:
        return EdgekdError(error)
    done = outcome.done
    if not done.failed_files:
        return None
    return EdgekdError(
        f"{outcome.models}: {len(done.failed_files)} of {done.n_files} files failed to benchmark"
    )


def run_remote_bench(path: Path, boards: list, results: Path | None, overrides: dict, **remote) -> list:
    """`edgekd bench --target/--targets`: every board at once; one `BoardRun` per board. A run directory's
    own bench settings travel as flags unless a suite is named; `overrides` that are set win."""
    from benchmarks.archive import is_bundle_archive, open_bundle_archive
    from toolkit.fleet.boards import board_args, run_on_boards

    if is_bundle_archive(path):  # bundle.tar.gz: its folder goes to the boards
        with open_bundle_archive(path) as folder:
            return run_remote_bench(folder, boards, results or Path("results.jsonl"), overrides, **remote)
    run, bundle, results = bench_paths(path, results)
    if run is not None and remote["suite"] is None:
        s = bench_suite(run, None)
        base = dict(threads=s.threads, batch_sizes=s.batch_sizes, min_runs=s.min_runs)
        base |= dict(min_time_s=s.min_time_s)
        overrides = {**base, "repeats": s.repeats, "pin": s.pin, **{k: v for k, v in overrides.items() if v}}
    return run_on_boards(
        boards,
        bundle,
        results,
        args=board_args(remote["suite"], overrides, remote["shape"]),
        known_hosts=remote["known_hosts"] or Path.home() / ".ssh" / "known_hosts",
        trust_new_host=remote["trust_new_host"],
        resume=remote["resume"],
        on_event=remote["on_event"],
    )
