"""Benchmark a bundle (its `manifest.json` and the files it names), a bundle archive, a bare model file, or
a folder of them: every planned configuration in shuffled rounds, each record appended as it is measured."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

from benchmarks.archive import is_bundle_archive, open_bundle_archive
from benchmarks.harness import BenchConfig, BenchmarkError, BenchmarkSkipped, run_benchmark
from benchmarks.plan import find_models, plan_configs, shuffled_order
from benchmarks.records import BenchRecord, append_record, drop_torn_tail, read_records
from benchmarks.suite import Suite

__all__ = ["BundleRun", "run_suite"]


@dataclass
class BundleRun:
    """What a run did: records measured, configurations that failed or were skipped, files involved."""

    records: list[BenchRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed_files: list[str] = field(default_factory=list)
    n_files: int = 0


def _with_accuracy(record: BenchRecord, measured: tuple[BenchRecord, int, int]) -> BenchRecord:
    first, round_, order = measured
    note = f"accuracy measured once per file and backend (round {round_}, position {order}), copied here"
    return replace(
        record,
        accuracy=first.accuracy,
        n_accuracy=first.n_accuracy,
        output_check=first.output_check,
        notes=[*record.notes, note],
    )


def run_suite(
    path: str | Path,
    results: str | Path,
    suite: Suite,
    *,
    shape: list[int] | None = None,
    on_result: Callable[[BenchRecord], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    python: str = sys.executable,
    resume: bool = False,
) -> BundleRun:
    """Benchmark every configuration of `suite` on the files under `path`, in shuffled rounds.

    `path` may be a bundle archive (.tar.gz), extracted to a temporary folder for the run. Each record is
    appended to `results` (JSONL) as soon as it is measured. A configuration that fails (its worker
    crashed or ran past `suite.timeout_s`) is listed in `errors` and the rest still run; one that cannot
    run by design (a batch the file does not take, a runtime not installed here) is listed in `skipped`.
    `python` runs the workers. With `resume`, (configuration, round) pairs that already have a record in
    `results` are not measured again.
    """
    archive = is_bundle_archive(path)
    note = f"measured from the bundle archive {path}, extracted to a temporary folder" if archive else None
    with (
        open_bundle_archive(path) if archive else nullcontext(Path(path)) as folder,
        tempfile.TemporaryDirectory(prefix="edgekd-bench-") as scratch,  # NHWC copies of the test data
    ):
        models = find_models(folder)
        configs, skipped = plan_configs(models, suite, shape=shape, scratch=Path(scratch))
        return _run_configs(
            configs,
            results,
            suite,
            BundleRun(skipped=skipped, n_files=len(models.files)),
            on_result=on_result,
            sleep=sleep,
            python=python,
            note=note,
            measured=measured_rounds(results) if resume else set(),
        )


def _round_key(model: str, fmt: str, precision: str, backend: str | None, threads: int, batch: int,
               streams: int, round_: int) -> tuple:  # fmt: skip
    return (model, fmt, precision, backend, threads, batch, streams, round_)


def measured_rounds(results: str | Path) -> set[tuple]:
    """(configuration, round) keys that `results` already holds; a torn last line is cut off first."""
    if not Path(results).is_file():
        return set()
    drop_torn_tail(results)
    return {
        _round_key(r.model, r.format, r.precision, r.backend, r.threads, r.batch_size, r.streams, r.round)
        for r in read_records(results)
    }


def _still_to_measure(configs: list[BenchConfig], suite: Suite, measured: set[tuple]):
    """(index, configuration with its round and order) in shuffled rounds, less the rounds `measured` holds
    (--resume: measured before the run was cut off)."""
    for round_, order, i in shuffled_order(len(configs), repeats=suite.repeats, seed=suite.seed):
        c = replace(configs[i], round=round_, order=order)
        if _round_key(c.model, c.format, c.precision, c.backend, c.threads, c.batch_size, c.streams,
                      round_) not in measured:  # fmt: skip
            yield i, c


def _shared_accuracy(record: BenchRecord, key: tuple, accuracy: dict) -> BenchRecord:
    """The accuracy pass runs once per (file, backend): later records carry the first one's result."""
    if key in accuracy:
        return _with_accuracy(record, accuracy[key])
    if record.accuracy is not None:
        accuracy[key] = (record, record.round, record.order)
    return record


def _run_configs(
    configs: list[BenchConfig],
    results: str | Path,
    suite: Suite,
    out: BundleRun,
    *,
    on_result: Callable[[BenchRecord], None] | None,
    sleep: Callable[[float], None],
    python: str = sys.executable,
    note: str | None = None,
    measured: set[tuple] = frozenset(),
) -> BundleRun:
    """`run_suite`'s loop over the planned configurations, in shuffled rounds; `note` goes on each record."""
    accuracy: dict[tuple[str, str | None], tuple[BenchRecord, int, int]] = {}
    cannot: dict[tuple[str, int], str] = {}  # (file, batch) -> skip reason: no worker needed next time
    failed: set[int] = set()  # configurations that failed: their later rounds would fail the same way
    ran = False
    for i, config in _still_to_measure(configs, suite, measured):
        if (config.model_path, config.batch_size) in cannot or i in failed:
            continue
        key = (config.model_path, config.backend)
        if key in accuracy:
            config = replace(config, data_path=None)
        if ran and suite.cooldown_s > 0:
            sleep(suite.cooldown_s)  # let a throttling board cool before the next configuration
        ran = True
        try:
            record = run_benchmark(config, python=python, timeout=suite.timeout_s)
        except BenchmarkSkipped as e:
            cannot[(config.model_path, config.batch_size)] = str(e)
            out.skipped.append(str(e))
            continue
        except BenchmarkError as e:
            failed.add(i)
            out.errors.append(str(e))
            out.failed_files = list(dict.fromkeys([*out.failed_files, config.model_path]))
            continue
        record = _shared_accuracy(record, key, accuracy)
        if note is not None:
            record = replace(record, notes=[*record.notes, note])
        append_record(results, record)
        out.records.append(record)
        if on_result is not None:
            on_result(record)
    return out
