"""`edgekd`: distill -> export -> bench -> report, each stage alone or all at once with `edgekd run`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from toolkit.cli import options as o
from toolkit.cli import output, printers
from toolkit.cli._progress import train_progress
from toolkit.cli.failures import bug_note, error_line
from toolkit.errors import EdgekdError, InputError
from toolkit.fleet.targets import load_targets, parse_target

app = typer.Typer(
    name="edgekd",
    help="Distill a compact student from a teacher, export it to ONNX/TFLite, benchmark every file and "
    "report the trade-off.\n\nExample:\n\n  edgekd run --out runs/demo        # the whole pipeline, "
    "built-in default\n\n  edgekd bench runs/demo/bundle     # on a board: only the bundle is needed",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
_state = {"debug": False}
# Third-party loggers that talk at import (torchao's "Failed to load _C_cutlass_90a.abi3.so" on a CPU
# machine, torch's pytree "is an Enum subclass" deprecation): errors only, unless --verbose.
QUIET_LOGGERS = ("torchao", "torch.utils._pytree")
# Modules whose import warns (asyncssh: cryptography's "DSA is deprecated", twice, on every remote bench).
QUIET_WARNINGS = (r"asyncssh(\.|$)",)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Show the converters' and runtimes' own log lines.")
    ] = False,
) -> None:
    _state["debug"] = debug
    if verbose:
        import os

        from export._files import VERBOSE_ENV

        os.environ[VERBOSE_ENV] = "1"
        return
    import logging
    import warnings

    for name in QUIET_LOGGERS:  # set before the libraries load: their import-time lines are the noisy ones
        logging.getLogger(name).setLevel(logging.ERROR)
    for module in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", module=module)


def _load(config: Path | None):
    """The config, once the extras its run needs are found installed (before a run directory is made)."""
    from benchmarks.extras import require
    from toolkit.config import load_config
    from toolkit.pipeline.export_stage import export_requires

    cfg = load_config(config)
    require("torch", *export_requires(cfg))
    return cfg


def _prepare(config: Path | None, out: Path, *, resume: bool = False):
    """The config, saved into the run directory; resuming, it must be the one the run started with."""
    from toolkit.pipeline.run import prepare_run

    cfg = _load(config)
    return cfg, prepare_run(cfg, out, resume=resume)


@app.command(
    "distill",
    epilog="Example: edgekd distill my.yaml --out runs/exp1   "
    "(2 processes: torchrun --nproc_per_node 2 -m toolkit.cli.main distill my.yaml --out runs/exp1)",
)
def distill_cli(
    config: o.ConfigArg = None, out: o.OutOpt = Path("runs/default"), resume: o.ResumeOpt = False
) -> None:
    """Train, reuse or load the teacher(s), distill the student per seed, and train the scratch control."""
    _distill(*_prepare(config, out, resume=resume), resume=resume)


@app.command("train-teacher", epilog="Example: edgekd train-teacher my.yaml --out runs/exp1")
def train_teacher_cli(
    config: o.ConfigArg = None, out: o.OutOpt = Path("runs/default"), resume: o.ResumeOpt = False
) -> None:
    """Train (or load) only the teacher(s); a later `edgekd distill` on the same run directory reuses them."""
    _distill(*_prepare(config, out, resume=resume), resume=resume, teachers_only=True)


def _distill(cfg, run, *, resume: bool = False, teachers_only: bool = False) -> None:
    from toolkit.pipeline.distill_stage import run_distill

    with train_progress() as on_step:
        summary = run_distill(cfg, run, on_step=on_step, resume=resume, teachers_only=teachers_only)
    printers.distilled(summary)


@app.command(
    "export",
    epilog="Example: edgekd export runs/exp1   or, from an ONNX file of your own:   edgekd export --from "
    "model.onnx --out out/ --calibration calib.npy --int8 static --test test.npz",
)
def export_cli(
    run_dir: o.RunDirArg = None,
    from_onnx: o.FromOpt = None,
    out: o.ExportOutOpt = None,
    calibration: o.CalibrationOpt = None,
    test: o.TestOpt = None,
    int8: o.Int8Opt = None,
    fp16: o.Fp16Opt = False,
    max_accuracy_drop: o.BudgetOpt = None,
    tflite: o.TfliteOpt = False,
    model: o.ModelOpt = None,
    weights: o.WeightsOpt = None,
    data: o.DataOpt = None,
    resume: o.ExportResumeOpt = False,
) -> None:
    """Export every checkpoint to ONNX and TFLite (+ int8 student), check parity, write the bundle; or,
    with --from, bundle an ONNX file you already have, checked against it."""
    from_only = dict(calibration=calibration, test=test, int8=int8, max_accuracy_drop=max_accuracy_drop)
    from_only |= dict(fp16=fp16, tflite=tflite)
    _check_export_options(run_dir, from_onnx, model, data, out, from_only)
    if model is not None:
        _export_model(model, weights, data, out)
    elif from_onnx is not None:
        _export_from(from_onnx, out=out, **from_only)
    else:
        from toolkit.rundir import RunDir

        _raise(_export(RunDir(run_dir), resume=resume))


def _check_export_options(run_dir, from_onnx, model, data, out, from_only: dict) -> None:
    """One source (a run directory, --from or --model) with the options that go with it."""
    if model is not None:
        if run_dir is not None or from_onnx is not None or data is None or out is None:
            raise InputError("--model: give --data CONFIG and --out DIR (and no run directory or --from)")
    elif from_onnx is not None:
        if run_dir is not None:
            raise InputError(f"{run_dir}: give a run directory or --from, not both")
    elif run_dir is None:
        raise InputError("edgekd export: give a run directory, or --from model.onnx --out DIR")
    elif given := [k for k, v in dict(out=out, **from_only).items() if v]:
        raise InputError(f"--{given[0].replace('_', '-')}: only with --from model.onnx")


def _export_model(model: str, weights: Path | None, data: Path, out: Path) -> None:
    """`edgekd export --model`: load the model on the config's data, then export it like a run's teacher."""
    from toolkit.pipeline.own_model import model_run

    _distill(*model_run(model, weights, data, out), teachers_only=True)
    from toolkit.rundir import RunDir

    _raise(_export(RunDir(out)))


def _export(run, *, resume: bool = False) -> EdgekdError | None:
    """Export a run's checkpoints and print the parity table; the failure to exit with, if any."""
    from toolkit.pipeline.export_stage import export_failure, run_export

    manifest = run_export(run, on_file=output.exported_file, resume=resume)
    output.parity_table(manifest)
    return export_failure(run.bundle, manifest.failures)


def _raise(*failures: EdgekdError | None) -> None:
    """Exit 1 with the first failure, after everything that could run has run."""
    for failure in failures:
        if failure is not None:
            raise failure


def _export_from(src: Path, *, out: Path | None, **options) -> None:
    """`edgekd export --from`: the bundle of one ONNX file, its parity table and the accuracy budget."""
    from export.from_onnx import export_from_onnx
    from toolkit.pipeline.export_stage import budget_failure, export_failure

    if out is None:
        raise InputError("--out: --from needs a folder to write the bundle into, e.g. --out out/")
    manifest = export_from_onnx(src, out, on_file=output.exported_file, **options)
    output.parity_table(manifest, reference=src.name)
    output.accuracy_budgets(manifest)
    _raise(export_failure(out / "bundle", manifest.failures), budget_failure(out / "bundle", manifest))


def _parse_shape(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        dims = [int(d) for d in text.split(",")]
    except ValueError:
        dims = []
    if not dims or min(dims) < 1:
        raise InputError(f"--shape: expected comma-separated integers >= 1 like 1,1,28,28, got {text!r}")
    return dims


@app.command(
    "bench",
    epilog="Example: edgekd bench runs/exp1   or, on a board:   edgekd bench bundle/ --suite raspberry-pi"
    "   or any file:   edgekd bench model.onnx --shape 1,3,224,224",
)
def bench_cli(
    path: o.BenchPathArg,
    threads: o.ThreadsOpt = None,
    results: o.ResultsOpt = None,
    min_runs: o.MinRunsOpt = None,
    min_time: o.MinTimeOpt = None,
    suite: o.SuiteOpt = None,
    batch: o.BatchOpt = None,
    streams: o.StreamsOpt = None,
    shape: o.ShapeOpt = None,
    repeats: o.RepeatsOpt = None,
    cooldown: o.CooldownOpt = None,
    seed: o.SeedOpt = None,
    pin: o.PinOpt = None,
    timeout: o.TimeoutOpt = None,
    resume: o.BenchResumeOpt = False,
    stream: o.StreamOpt = False,
    target: o.TargetOpt = None,
    targets: o.TargetsOpt = None,
    trust_new_host: o.TrustOpt = False,
    known_hosts: o.KnownHostsOpt = None,
) -> None:
    """Benchmark every file (x threads x batch x streams, shuffled, repeated) on this machine; one JSON
    record per configuration appended as measured, results.csv rewritten at the end."""
    dims, overrides = _bench_overrides(shape, timeout, threads=threads, batch_sizes=batch, streams=streams,
                                       min_runs=min_runs, min_time_s=min_time, repeats=repeats,
                                       cooldown_s=cooldown, seed=seed, pin=pin)  # fmt: skip
    if target or targets:
        boards = [parse_target(target)] if target else load_targets(targets)
        remote = dict(resume=resume, trust_new_host=trust_new_host, known_hosts=known_hosts, suite=suite)
        _raise(_bench_remote(path, boards, results, overrides, shape=shape, **remote))
        return
    on_result = output.record_line if stream else output.bench_row
    options = dict(suite=suite, results=results, shape=dims, resume=resume, on_result=on_result)
    _raise(_bench(path, **options, **overrides))


def _bench_overrides(shape: str | None, timeout: float | None, **flags) -> tuple[list[int] | None, dict]:
    """The input shape --shape gives, and the suite fields the flags override (None: the suite's)."""
    dims = _parse_shape(shape)
    if timeout is not None and not 0 < timeout < float("inf"):  # typer's min= cannot exclude 0
        raise InputError(f"--timeout: expected seconds > 0, got {timeout:g}")
    batch = flags["batch_sizes"] or ([dims[0]] if dims else None)
    return dims, dict(flags, batch_sizes=batch, timeout_s=timeout)


def _bench_remote(path: Path, boards, results, overrides, **remote) -> EdgekdError | None:
    """`edgekd bench --target/--targets`: a line per board event, a table at the end."""
    from toolkit.pipeline.bench_stage import run_remote_bench

    runs = run_remote_bench(path, boards, results, overrides, on_event=output.board_line, **remote)
    failed = [r for r in runs if r.error is not None]
    if len(runs) > 1 or not failed or runs[0].records:  # one board that measured nothing: its line says it
        output.boards_table(runs)
    if failed:
        many = f"{len(failed)} of {len(runs)} boards failed (see the table)"
        return EdgekdError(failed[0].error if len(failed) == 1 else many)
    return None


def _bench(path: Path, *, on_result=output.bench_row, **options) -> EdgekdError | None:
    """Benchmark and print each record, then the table; the failure to exit with, if any."""
    from toolkit.pipeline.bench_stage import bench_failure, run_bench

    outcome = run_bench(path, on_result=on_result, **options)
    printers.benched(outcome)
    return bench_failure(outcome)


@app.command(
    "predict",
    epilog="Example: edgekd predict bundle/ shoe.png shirt.jpg --top-k 3   "
    "or, for scripts:   edgekd predict bundle/ *.png --file student_kd_int8.tflite --json   "
    'or, with a text bundle:   edgekd predict bundle/ --text "a gripping, funny film"',
)
def predict_cli(
    bundle: o.BundleArg,
    images: o.ImagesArg = None,
    texts: o.TextsOpt = None,
    file: o.FileOpt = None,
    top_k: o.TopKOpt = 5,
    as_json: o.JsonOpt = False,
) -> None:
    """Classify images (or texts, --text) with one file of a bundle: the manifest's preprocessing, then the
    top-k labels."""
    from benchmarks.predict import predict
    from export._files import native_stderr_hidden

    with native_stderr_hidden():  # the runtime's notices (TFLite's XNNPACK line); --verbose shows them
        result = predict(bundle, images or [], texts=texts or [], file=file, top_k=top_k)
    output.predictions(result, as_json=as_json)


@app.command(
    "profile",
    epilog="Example: edgekd profile runs/demo/bundle   (one file: --file student_kd_int8.onnx)",
)
def profile_cli(
    bundle: o.BundleArg,
    file: o.ProfileFileOpt = None,
    threads: o.ProfileThreadsOpt = 1,
    runs: o.ProfileRunsOpt = 200,
    out: o.ProfileOutOpt = None,
    target: o.TargetOpt = None,
    targets: o.TargetsOpt = None,
    trust_new_host: o.TrustOpt = False,
    known_hosts: o.KnownHostsOpt = None,
) -> None:
    """Per-operator times of every file from its runtime's profiler (onnxruntime; LiteRT lists its ops
    untimed), and why each int8/fp16 file is faster or slower than its fp32 twin: profile.md."""
    from toolkit.pipeline.profile_stage import run_profile, run_remote_profile

    if target or targets:
        boards = [parse_target(target)] if target else load_targets(targets)
        remote = dict(trust_new_host=trust_new_host, known_hosts=known_hosts, on_event=output.board_line)
        done = run_remote_profile(bundle, boards, out=out, file=file, threads=threads, runs=runs, **remote)
        output.board_profiles(done)
        if failed := [run.error for run, _ in done if run.error]:
            raise EdgekdError(failed[0] if len(failed) == 1 else f"{len(failed)} boards failed: {failed[0]}")
        return
    path, markdown = run_profile(bundle, file=file, threads=threads, runs=runs, out=out,
                                 on_profile=output.profiled)  # fmt: skip
    output.profile_written(path, markdown)


@app.command(
    "report",
    epilog="Example: edgekd report runs/exp1   or, side by side:   edgekd report --compare runs/pc runs/pi4",
)
def report_cli(
    run_dir: o.RunArg,
    more_runs: o.MoreRunsArg = None,
    out: o.ReportOutOpt = None,
    max_accuracy_drop: o.DropOpt = 1.0,
    compare: o.CompareOpt = False,
    fail_on_regression: o.RegressionOpt = None,
) -> None:
    """Write report.md/.html, results.csv and plots; with several runs, compare.md/.html side by side."""
    from toolkit.pipeline.report_stage import run_compare

    runs = [run_dir, *(more_runs or [])]
    if not (compare or more_runs):
        if fail_on_regression is not None:
            raise EdgekdError(f"{run_dir}: --fail-on-regression needs --compare and a second run directory")
        _report(run_dir, out=out, max_accuracy_drop=max_accuracy_drop)
        return
    path, found, failure = run_compare(runs, out=out, max_slowdown_pct=fail_on_regression)
    output.compare_written(path)
    output.regressions(found)
    _raise(failure)


def _report(run_dir: Path, **options) -> None:
    from toolkit.pipeline.report_stage import run_report

    output.report_written(run_report(run_dir, **options))


@app.command("sweep", epilog="Example: edgekd sweep toolkit/configs/sweeps/student.yaml --out runs/sweep")
def sweep_cli(
    sweep_file: Annotated[Path, typer.Argument(help="The sweep file: base config, fixed settings, space.")],
    out: o.OutOpt = Path("runs/sweep"),
    max_accuracy_drop: Annotated[
        float | None, typer.Option(help="Accuracy points below the teacher a recommended student may lose.")
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="Run the trials on this Ray cluster (host:port or auto) through Ray Tune (edgekd[ray]).",
        ),
    ] = None,
) -> None:
    """Search the student and distillation settings: one pipeline run per trial, one shared teacher; the
    sweep report (trials, fronts, recommendation) and the winning trial's config as best.yaml."""
    from benchmarks.extras import require
    from toolkit.sweep.report import write_sweep_report
    from toolkit.sweep.search import run_sweep
    from toolkit.sweep.space import load_sweep

    sweep, cfg = load_sweep(sweep_file)
    require("torch", *(["optuna"] if sweep.search == "optuna" else []), *(["ray"] if ray else []))
    results = run_sweep(sweep, cfg, out, on_trial=output.sweep_trial, ray_address=ray)
    drop = sweep.max_accuracy_drop if max_accuracy_drop is None else max_accuracy_drop
    path = write_sweep_report(out, results, max_accuracy_drop=drop)
    output.console.print(f"sweep report: {path}")


@app.command("run", epilog="Example: edgekd run --out runs/demo   (or: edgekd run my.yaml --out runs/exp1)")
def run_cli(
    config: o.ConfigArg = None,
    out: o.OutOpt = Path("runs/default"),
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue a run that was cut off: finished models, files and rounds are kept.",
        ),
    ] = False,
) -> None:
    """All four stages on one run directory: distill, export, bench, report."""
    from toolkit.pipeline.run import run_pipeline

    outcome = run_pipeline(_load(config), out, resume=resume, hooks=printers.RunPrinter())
    _raise(*outcome.failures)  # after everything that could run has run


def main() -> None:
    """Entry point: edgekd's errors and usage errors become one line on stderr and exit 1; any other exception
    is a bug in edgekd and keeps its traceback, under a line that says so."""
    try:
        app(sys.argv[1:] or ["--help"], standalone_mode=False)  # bare `edgekd`: help, exit 0
    except (EdgekdError, typer.TyperException) as e:
        # TyperException: typer's own usage errors (a missing path, a bad option); typer >= 0.29 carries
        # its own copy of click, so nothing here may import click (a board install does not have it).
        if _state["debug"]:
            raise
        error_line(e.format_message() if isinstance(e, typer.TyperException) else str(e))
    except ModuleNotFoundError as e:  # an extra this install lacks (a board install running a PC command)
        from benchmarks.extras import missing_extra

        if _state["debug"] or (line := missing_extra(e)) is None:
            bug_note(e)
            raise
        error_line(line)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as e:
        bug_note(e)
        raise


if __name__ == "__main__":
    main()
