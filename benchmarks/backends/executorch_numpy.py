"""Torch-free ExecuTorch backend for boards: `.pte` programs through `executorch-numpy-runtime` (ExecuTorch's
C++ runtime and XNNPACK delegate, fed numpy arrays). PyTorch's `executorch.runtime` links libtorch, and PyPI's
aarch64 torch pulls CUDA wheels, so a board runs `.pte` files with this one (Python >= 3.12)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.backends import EXECUTORCH_DTYPES, Backend, register_backend
from benchmarks.errors import InputError, first_line

__all__ = ["PteProgram", "load", "describe", "input_spec", "prepare", "invoke", "run", "version"]

register_backend(
    Backend(
        "executorch-numpy", {"pte": ".pte"}, requires="executorch_numpy_runtime",
        distribution="executorch-numpy-runtime", module=__name__,
        rank=1,  # where PyTorch's executorch is installed (the export machine) it is the default
    )
)  # fmt: skip


@dataclass
class PteProgram:
    """A loaded program's `forward` method and its first input's shape and dtype."""

    method: Any
    path: str
    input_shape: list[int | None]
    dtype: Any


def load(path: str | Path, *, threads: int) -> PteProgram:
    """Load `path`'s `forward`. This runtime sizes XNNPACK's threadpool itself: `threads` is met by the
    worker's core pinning (the record's cpu_affinity), not by the pool; `describe` says so."""
    import executorch_numpy_runtime as etn

    try:
        method = etn.Runtime.get().load_program(str(path)).load_method("forward")
        meta = method.metadata["inputs"][0]
    except (etn.ExecuTorchError, RuntimeError, ValueError) as exc:
        reason = first_line(exc, limit=160)
        raise InputError(f"{path}: executorch-numpy-runtime cannot load it ({reason})") from exc
    dtype = EXECUTORCH_DTYPES.get(int(meta["scalar_type"]))
    if dtype is None:
        known = ", ".join(EXECUTORCH_DTYPES.values())
        raise InputError(f"{path}: input dtype code {meta['scalar_type']} is not one edgekd feeds ({known})")
    return PteProgram(method, str(path), list(meta["shape"]), np.dtype(dtype))


def describe(handle: PteProgram) -> dict[str, Any]:
    """What the runtime is: its ExecuTorch version, and that its threadpool is not settable."""
    import executorch_numpy_runtime as etn

    return {
        "method": "forward",
        "executorch_runtime": etn.__et_version__,
        "threadpool": "runtime default (not settable); bounded by the worker's cores",
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }


def input_spec(handle: PteProgram) -> tuple[str, list[int | None], Any]:
    """(name, shape, numpy dtype) of the first input; a `.pte` program's shapes are fixed."""
    return "input", list(handle.input_shape), handle.dtype


def prepare(handle: PteProgram, x: np.ndarray) -> np.ndarray:
    """`x` contiguous in the program's dtype; done outside timed loops."""
    return np.ascontiguousarray(x, dtype=handle.dtype)


def invoke(handle: PteProgram, x: np.ndarray) -> np.ndarray:
    """One inference on a prepared array; first output."""
    return handle.method([x])[0]


def run(handle: PteProgram, x: np.ndarray) -> np.ndarray:
    """First output for input `x`, as numpy."""
    return np.asarray(invoke(handle, prepare(handle, x)))


def version() -> str | None:
    """executorch-numpy-runtime's version string, or None if unknown."""
    try:
        return metadata.version("executorch-numpy-runtime")
    except metadata.PackageNotFoundError:
        return None
