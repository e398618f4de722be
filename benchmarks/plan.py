"""What a bench run measures: the model files under a path (bundle, bare file or folder), and one
configuration per file x threads x batch x streams, in shuffled rounds."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.backends import available, backend_for, file_suffixes, suffixes_text
from benchmarks.errors import InputError
from benchmarks.files import atomic_path
from benchmarks.harness import BenchConfig
from benchmarks.manifest import (
    Manifest,
    ModelEntry,
    Preprocessing,
    TokenPreprocessing,
    check_files,
    read_manifest,
)
from benchmarks.suite import Suite, resolve_target

__all__ = [
    "ModelFile",
    "ModelSet",
    "bare_model",
    "find_models",
    "plan_configs",
    "shuffled_order",
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
        raise InputError(f"{path}: cannot benchmark a {what} file; expected {expected}")
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
            raise InputError(
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
