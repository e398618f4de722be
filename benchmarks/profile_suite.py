"""`edgekd profile`: every file of a bundle (or one) profiled with its runtime's own profiler, on this
machine, with the bench protocol's input (one test row), pinned thread count and warm-up."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.backends import available, backend_for, load_backend
from benchmarks.errors import InputError
from benchmarks.machine import machine_facts
from benchmarks.plan import ModelFile, ModelSet, find_models
from benchmarks.preprocess import model_input
from benchmarks.profile import Profile, ProfileFile, pinned_cores, unprofiled_p50_us
from benchmarks.suite import load_suite, resolve_target

__all__ = ["profile_bundle"]


def _first_row(models: ModelSet) -> np.ndarray:
    """The bundle's first test row as model input (NCHW); a bundle without test data is refused."""
    if models.data_path is None or models.preprocessing is None:
        raise InputError(
            f"{models.files[0].path}: profiling needs a bundle with test data (its manifest's test_data)"
        )
    with np.load(models.data_path) as data:
        return model_input(data["x"][:1], models.preprocessing)


def _as_taken(file: ModelFile, x: np.ndarray) -> np.ndarray:
    """`x` in the file's input layout (NHWC files get it transposed)."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if file.layout == "NHWC" and x.ndim == 4 else x


def _profile_one(file: ModelFile, x: np.ndarray, *, threads: int, runs: int, warmup: int) -> Profile:
    backend = backend_for(file.path)
    module = load_backend(backend)
    handle = module.load(file.path, threads=threads)
    prepared = module.prepare(handle, x)
    p50 = unprofiled_p50_us(lambda: module.invoke(handle, prepared), runs=runs, warmup=warmup)
    if (profiler := getattr(module, "profile", None)) is not None:  # a backend's optional op profiler
        feed = np.ascontiguousarray(x, dtype=module.input_spec(handle)[2])
        profile = profiler(file.path, feed, threads=threads, runs=runs, warmup=warmup)
    else:  # a runtime without an op profiler edgekd reads: its p50 alone
        profile = Profile(file.path, 0, None, [], timed=False)
    profile.model, profile.format, profile.precision = file.model, file.format, file.precision
    profile.backend, profile.p50_us = backend, p50
    return profile


def profile_bundle(
    path: str | Path,
    *,
    file: str | None = None,
    threads: int = 1,
    runs: int = 200,
    warmup: int = 20,
    on_profile: Callable[[Profile], None] = lambda p: None,
) -> ProfileFile:
    """Profile every file of the bundle at `path` (or only `file`, a name in it) whose runtime is here."""
    models = find_models(Path(path) / file if file else path)
    files = [f for f in models.files if available(backend_for(f.path))]  # as bench skips them
    if not files:
        raise InputError(f"{path}: no file whose runtime is installed here")
    x, profiles = _first_row(models), []
    with pinned_cores(threads):
        for f in files:
            profiles.append(_profile_one(f, _as_taken(f, x), threads=threads, runs=runs, warmup=warmup))
            on_profile(profiles[-1])
    target = resolve_target(load_suite("cpu"), threads)  # emulated ARM is labelled so, as bench does
    return ProfileFile(machine_facts(), threads, runs, warmup, profiles, target=target)
