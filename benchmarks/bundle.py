"""Benchmark a bundle (its `manifest.json` and the files it names), a bare model file, or a folder of them."""

from __future__ import annotations

import gzip
import os
import random
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.backends import available, backend_for, file_suffixes, suffixes_text
from benchmarks.files import atomic_path
from benchmarks.harness import BenchConfig, BenchmarkError, BenchmarkSkipped, run_benchmark
from benchmarks.manifest import (
    Manifest,
    ModelEntry,
    Preprocessing,
    TokenPreprocessing,
    check_files,
    read_manifest,
)
from benchmarks.records import BenchRecord, append_record, drop_torn_tail, read_records
from benchmarks.suite import Suite, resolve_target

__all__ = [
    "BundleRun",
    "ModelFile",
    "ModelSet",
    "bare_model",
    "find_models",
    "is_bundle_archive",
    "open_bundle_archive",
    "plan_configs",
    "shuffled_order",
    "run_suite",
]


def model_suffixes() -> dict[str, str]:
    """Model file suffix -> manifest format, for every registered backend's formats."""
    return {suffix: fmt for fmt, suffix in file_suffixes().items()}


@dataclass(frozen=True)
class ModelFile:
    """One file to benchmark and the metadata its records carry."""

    path: str
    model: str
    role: str = "unknown"
    format: str = ""
    precision: str = "unknown"
    layout: str = "NCHW"  # the file's input layout; a bundle's test data and declared shape are NCHW
    reference: dict[str, Any] | None = None  # BenchConfig.reference: the export machine's outputs


@dataclass
class ModelSet:
    """The files under a path, with the bundle's test data, preprocessing and declared input shape."""

    files: list[ModelFile]
    data_path: str | None = None
    preprocessing: Preprocessing | TokenPreprocessing | None = None
    input_shape: list[int | None] | None = None  # None for bare files: the model itself says


def bare_model(path: Path) -> ModelFile:
    """One model file without a manifest; `ValueError` naming it when its suffix is not a model's."""
    suffixes = model_suffixes()
    if path.suffix.lower() not in suffixes:
        expected = suffixes_text()
        what = path.suffix or "suffix-less"
        raise ValueError(f"{path}: cannot benchmark a {what} file; expected {expected}")
    return ModelFile(str(path), path.stem, format=suffixes[path.suffix.lower()])


def find_models(path: str | Path) -> ModelSet:
    """Files to benchmark: a bundle's manifest entries, one bare model file, or a folder's model files."""
    path = Path(path)
    if path.is_file():
        if (path.parent / "manifest.json").is_file():  # one file of a bundle keeps its manifest entry
            models = find_models(path.parent)
            models.files = [f for f in models.files if Path(f.path).resolve() == path.resolve()]
            if models.files:
                return models
        return ModelSet([bare_model(path)])
    if not (path / "manifest.json").exists():
        suffixes = model_suffixes()
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
        if not files:
            raise ValueError(
                f"{path / 'manifest.json'}: not found, and {path} holds no {suffixes_text()} file "
                "(is it an edgekd bundle? run `edgekd export` first)"
            )
        return ModelSet([bare_model(p) for p in files])
    manifest = read_manifest(path)
    check_files(manifest, path)  # a received bundle: every file present, inside it and unchanged
    files = [
        ModelFile(
            str(path / e.file), e.name, e.role, e.format, e.precision, e.layout, _reference(e, manifest, path)
        )
        for e in manifest.models
    ]
    return ModelSet(
        files,
        data_path=str(path / manifest.test_data.file) if manifest.test_data else None,
        preprocessing=manifest.input.preprocessing,
        input_shape=list(manifest.input.shape),
    )


def _reference(entry: ModelEntry, manifest: Manifest, bundle: Path) -> dict[str, Any] | None:
    """What the accuracy pass compares `entry`'s outputs with: the manifest's reference outputs, if any."""
    ref = manifest.reference_outputs
    if ref is None or entry.file not in ref.arrays:
        return None
    return {"path": str(bundle / ref.file), "key": ref.arrays[entry.file], "rows": ref.rows,
            "machine": ref.machine, "tolerance": dict(entry.parity.tolerance)}  # fmt: skip


ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")  # what `edgekd export` writes beside the bundle, and its short form
# Why tarfile's "data" filter refused a member, in words that do not name the temporary folder. By name:
# Pythons before 3.10.12 / 3.11.4 have no filters, and `import benchmarks` must still work there.
_REFUSED = {
    "AbsolutePathError": "has an absolute path",
    "OutsideDestinationError": "would be written outside the bundle folder",
    "AbsoluteLinkError": "links to the absolute path {link}",
    "LinkOutsideDestinationError": "links to {link}, outside the bundle folder",
    "SpecialFileError": "is a device or FIFO, not a regular file",
}


def is_bundle_archive(path: str | Path) -> bool:
    """Whether `path` is a file named like a bundle archive (`.tar.gz` or `.tgz`)."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES) and Path(path).is_file()


def _member_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    # The "data" filter strips a leading "/" and extracts the member anyway; a bundle never has one.
    if member.name.startswith(("/", os.sep)) or os.path.isabs(member.name):
        raise tarfile.AbsolutePathError(member)
    return tarfile.data_filter(member, dest)


def _refusal(archive: Path, error: tarfile.FilterError) -> ValueError:
    member = error.tarinfo
    name = member.name if member.name.isprintable() else repr(member.name)  # one line, whatever the name
    link = member.linkname if member.linkname.isprintable() else repr(member.linkname)
    known = _REFUSED.get(type(error).__name__)
    reason = known.format(link=link) if known is not None else " ".join(str(error).split())
    return ValueError(f"{archive}: refused member {name}: {reason}")


def _archive_bundle(folder: Path, archive: Path) -> Path:
    """The extracted bundle: the folder itself, or the one folder in it (`edgekd export` writes `bundle/`)."""
    if (folder / "manifest.json").is_file():
        return folder
    entries = list(folder.iterdir())
    if len(entries) == 1 and (entries[0] / "manifest.json").is_file():
        return entries[0]
    raise ValueError(
        f"{archive}: no manifest.json at its top or in its one top folder (is it an edgekd bundle archive?)"
    )


@contextmanager
def open_bundle_archive(path: str | Path) -> Iterator[Path]:
    """Extract a bundle archive into a temporary folder, removed on exit; yield the bundle folder in it.

    Members with absolute or escaping paths, links out of the folder and device files raise ValueError.
    """
    archive = Path(path)
    if not hasattr(tarfile, "data_filter"):
        raise ValueError(
            f"{archive}: Python {sys.version.split()[0]} cannot extract archives safely (3.10.12+, 3.11.4+ "
            "and 3.12+ can); extract it with `tar xzf` and benchmark the folder"
        )
    with tempfile.TemporaryDirectory(prefix="edgekd-archive-") as tmp:
        try:
            with tarfile.open(archive, "r:gz", errorlevel=1) as tar:  # errorlevel 1: refusals raise
                tar.extractall(tmp, filter=_member_filter)
        except tarfile.FilterError as exc:
            raise _refusal(archive, exc) from exc
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            why = " ".join(str(exc).split())  # one line
            raise ValueError(f"{archive}: not a readable .tar.gz bundle archive ({why})") from exc
        yield _archive_bundle(Path(tmp), archive)


def _backend(file: ModelFile, suite: Suite) -> tuple[str | None, str]:
    """(backend, why none) for `file`: the suite's first installed choice for its format, else the default."""
    names = suite.backends.get(file.format) or [backend_for(file.path)]
    chosen = next((n for n in names if available(n)), None)
    return chosen, f"{file.path}: skipped, no runtime installed for {' or '.join(names)}"


def _threads(suite: Suite) -> list[int]:
    """The suite's thread counts, capped at a constrained target's `max_threads` (or its core count)."""
    if suite.target.get("kind") != "constrained":
        return list(suite.threads)
    cap = suite.target.get("max_threads", suite.target["cpus"])
    return list(dict.fromkeys(min(t, cap) for t in suite.threads))


def _pinned_cores(suite: Suite, threads: int, streams: int) -> list[int] | None:
    """The last threads x streams cores this process may use, when the suite pins a native target and
    there are that many; more threads than cores would only be serialized by pinning."""
    if not suite.pin or suite.target.get("kind") == "constrained":
        return None  # a constrained target pins to its own cores
    try:
        cores = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows: no affinity call, so no pinning
        return None
    need = threads * streams
    # The last cores: Linux routes most device interrupts and housekeeping to core 0.
    return cores[-need:] if need <= len(cores) else None


def _nhwc_shape(shape: list[int | None] | None) -> list[int | None] | None:
    return [shape[0], *shape[2:], shape[1]] if shape is not None and len(shape) == 4 else shape


def _nhwc_data(
    data_path: str, preprocessing: Preprocessing | TokenPreprocessing | None, scratch: Path
) -> tuple[str | None, Preprocessing | TokenPreprocessing | None, str | None]:
    """(NHWC copy of the NCHW test data in `scratch`, preprocessing for it, why not) for an NHWC file.

    The accuracy pass normalizes along axis 1, so per-channel values only fit it when they are all equal.
    """
    pre = preprocessing
    for key in ("mean", "std"):
        values = getattr(pre, key, None)
        if isinstance(values, list) and len(values) > 1:
            if len(set(values)) > 1:
                return None, None, f"per-channel {key} {values} cannot be applied to NHWC test data"
            pre = pre.model_copy(update={key: values[:1]})
    dst = scratch / f"{Path(data_path).stem}_nhwc.npz"
    if not dst.exists():
        with np.load(data_path) as data:
            x, y = data["x"], data["y"]
        if x.ndim != 4:
            return None, None, f"{data_path}: expected 4-D (N, C, H, W) test images, got {list(x.shape)}"
        with atomic_path(dst) as tmp:
            np.savez(tmp, x=np.ascontiguousarray(x.transpose(0, 2, 3, 1)), y=y)
    return str(dst), pre, None


def plan_configs(
    models: ModelSet, suite: Suite, *, shape: list[int] | None = None, scratch: Path | None = None
) -> tuple[list[BenchConfig], list[str]]:
    """One config per file x threads x batch x streams, and a skip line per file with no runtime here.

    An NHWC file gets the bundle's NCHW shape and test data transposed (the data copied into `scratch`).
    """
    targets = {t: resolve_target(suite, t) for t in _threads(suite)}
    schedule = {
        "repeats": suite.repeats,
        "cooldown_s": suite.cooldown_s,
        "seed": suite.seed,
        "order": "shuffled",
        "pin": suite.pin,
    }
    configs, skipped = [], []
    for file in models.files:
        backend, why = _backend(file, suite)
        if backend is None:
            skipped.append(why)
            continue
        data_path = models.data_path if suite.accuracy else None
        preprocessing, input_shape = models.preprocessing, models.input_shape
        if file.layout == "NHWC":
            input_shape = _nhwc_shape(input_shape)
            if data_path is not None:
                if scratch is None:
                    data_path, why = None, "no folder given for its transposed copy"
                else:
                    data_path, preprocessing, why = _nhwc_data(data_path, preprocessing, scratch)
                if data_path is None:
                    skipped.append(f"{file.path}: accuracy not measured for this NHWC file ({why})")
        common = dict(
            model_path=file.path,
            backend=backend,
            model=file.model,
            role=file.role,
            format=file.format,
            precision=file.precision,
            data_path=data_path,
            # The worker gets it as JSON, parsed there only after the model's memory was read.
            preprocessing=preprocessing.model_dump(mode="json") if preprocessing is not None else None,
            reference=file.reference if data_path is not None else None,
            backend_options=dict(suite.backend_options.get(backend, {})),
            input_shape=shape if shape is not None else input_shape,
            warmup=suite.warmup,
            min_runs=suite.min_runs,
            min_time_s=suite.min_time_s,
            max_runs=suite.max_runs,
            suite=suite.name,
            schedule=schedule,
        )
        for (threads, target), batch, streams in product(targets.items(), suite.batch_sizes, suite.streams):
            cpus = _pinned_cores(suite, threads, streams)
            configs.append(
                BenchConfig(
                    **common, threads=threads, target=target, batch_size=batch, streams=streams, cpus=cpus
                )
            )
    return configs, skipped


def shuffled_order(n: int, *, repeats: int, seed: int) -> list[tuple[int, int, int]]:
    """(round, position in round, config index) for `repeats` rounds, each a fresh seeded permutation.

    Shuffling spreads drift (a board heating up, a background job) over all configurations instead of
    favouring whichever always runs first.
    """
    rng = random.Random(seed)
    out = []
    for r in range(repeats):
        order = list(range(n))
        rng.shuffle(order)
        out.extend((r, pos, i) for pos, i in enumerate(order))
    return out


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
