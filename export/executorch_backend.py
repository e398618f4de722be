"""ExecuTorch backend: runs a `.pte` program with `executorch.runtime` (XNNPACK-delegated where the exporter
lowered it, portable kernels for the rest). Its Python runtime takes torch tensors, so it is registered from
here, through the `edgekd.backends` entry point, and `benchmarks` stays torch-free."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.backends import EXECUTORCH_DTYPES, Backend, register_backend
from toolkit.errors import InputError, first_line

__all__ = ["PteModel", "load", "describe", "input_spec", "prepare", "invoke", "run", "profile", "version"]

register_backend(
    Backend("executorch", {"pte": ".pte"}, requires="executorch", distribution="executorch", module=__name__)
)


@dataclass
class PteModel:
    """A loaded program's `forward` method and its first input's shape and dtype."""

    method: Any
    path: str
    input_shape: list[int | None]
    dtype: Any
    threads: int


def load(path: str | Path, *, threads: int) -> PteModel:
    """Load `path`'s `forward` with XNNPACK's threadpool at `threads` (by default it takes every core)."""
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    from export._files import native_stderr_hidden

    with native_stderr_hidden():  # the runtime logs "Resetting threadpool to N threads." on fd 2
        portable_lib._unsafe_reset_threadpool(threads)
    try:
        method = Runtime.get().load_program(str(path)).load_method("forward")
    except Exception as exc:  # the runtime raises RuntimeError or ValueError with the C++ error code
        raise InputError(f"{path}: executorch cannot load it ({first_line(exc, limit=160)})") from exc
    meta = method.metadata.input_tensor_meta(0)
    dtype = EXECUTORCH_DTYPES.get(int(meta.dtype()))
    if dtype is None:
        known = ", ".join(EXECUTORCH_DTYPES.values())
        raise InputError(f"{path}: input dtype code {meta.dtype()} is not one edgekd feeds ({known})")
    return PteModel(method, str(path), list(meta.sizes()), np.dtype(dtype), threads)


def describe(handle: PteModel) -> dict[str, Any]:
    """The threadpool size the runtime really uses."""
    from executorch.extension.pybindings import portable_lib

    return {"threads": portable_lib._threadpool_get_thread_count(), "method": "forward"}


def input_spec(handle: PteModel) -> tuple[str, list[int | None], Any]:
    """(name, shape, numpy dtype) of the first input; a `.pte` program's shapes are fixed."""
    return "input", list(handle.input_shape), handle.dtype


def prepare(handle: PteModel, x: np.ndarray) -> Any:
    """`x` as a tensor sharing its memory; done outside timed loops."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(x, dtype=handle.dtype))


def invoke(handle: PteModel, x: Any) -> Any:
    """One inference on a prepared tensor; first output."""
    return handle.method.execute([x])[0]


def run(handle: PteModel, x: np.ndarray) -> np.ndarray:
    """First output for input `x`, as numpy."""
    return invoke(handle, prepare(handle, x)).detach().numpy()


def _xnnpack_dtype(name: str) -> str:
    """The dtype an XNNPACK operator's event name gives, e.g. "Convolution (NHWC, QS8) IGEMM #1" -> int8."""
    inside = name.partition("(")[2].partition(")")[0].split(", ")[-1]
    floats = {"F32": "float32", "X32": "float32", "F16": "float16", "X16": "float16"}
    return floats.get(inside, "int8" if "8" in inside else "?")


def profile(path: str | Path, x: np.ndarray, *, threads: int, runs: int, warmup: int):
    """Per-operator times from ExecuTorch's ETDump (its event tracer): XNNPACK's operators (their dtype in
    their names) and any portable kernels, over the runs after `warmup`."""
    import os
    import tempfile

    import torch
    from executorch.devtools import Inspector
    from executorch.extension.pybindings import portable_lib

    from benchmarks.profile import OpTime, Profile
    from export._files import native_stderr_hidden

    with native_stderr_hidden():
        portable_lib._unsafe_reset_threadpool(threads)
        module = portable_lib._load_for_executorch(str(path), enable_etdump=True, debug_buffer_size=0)
    feed = torch.from_numpy(np.ascontiguousarray(x))
    for _ in range(warmup + runs):
        module.forward([feed])
    with tempfile.TemporaryDirectory(prefix="edgekd-etdump-") as tmp, native_stderr_hidden():
        dump = os.path.join(tmp, "run.etdp")
        module.write_etdump_result_to_file(dump)
        events = next(b for b in Inspector(etdump_path=dump).event_blocks if b.name == "Execute").events
    ops, run_us = [], None
    for e in events:
        us = [v * 1000 for v in (e.perf_data.raw if e.perf_data else [])][warmup:]  # ms -> µs
        if e.name == "Method::execute":
            run_us = sum(us)
        elif e.name != "DELEGATE_CALL":  # the delegate's whole call: its operators are listed one by one
            where = "XnnpackBackend" if e.is_delegated_op else "portable"
            dtype = _xnnpack_dtype(e.name) if e.is_delegated_op else "?"
            ops.append(OpTime(e.name, e.name.rsplit(" #", 1)[0], where, [dtype], len(us), sum(us)))
    return Profile(str(path), runs, run_us, sorted(ops, key=lambda o: -(o.total_us or 0.0)))


def version() -> str | None:
    """executorch's version string, or None if unknown."""
    try:
        return metadata.version("executorch")
    except metadata.PackageNotFoundError:
        return None
