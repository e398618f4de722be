"""PyTorch reference backend: runs a `.pt2` ExportedProgram on the CPU, eagerly or torch.compile'd."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.backends import Backend, register_backend
from toolkit.errors import InputError, first_line

__all__ = ["TorchModel", "load", "describe", "input_spec", "prepare", "invoke", "run", "version"]

register_backend(Backend("torch", {"torch": ".pt2"}, requires="torch", distribution="torch", module=__name__))


@dataclass
class TorchModel:
    """The program's module (compiled or not), its input name and shape."""

    module: Any
    path: str
    input_name: str
    input_shape: list[int | None]
    compile: bool = False


def load(path: str | Path, *, threads: int, compile: bool = False) -> TorchModel:
    """Load an ExportedProgram, set torch's intra-op threads, and torch.compile it if asked."""
    import torch

    torch.set_num_threads(threads)
    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise InputError(f"{path}: not a torch.export program ({first_line(exc)})") from exc
    name = program.graph_signature.user_inputs[0]
    meta = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == name).meta["val"]
    shape = [d if isinstance(d, int) else None for d in meta.shape]
    module = program.module()
    if compile:
        # Compilation is lazy: it happens on the first call, which the harness times as first_run_ms.
        module = torch.compile(module)
    return TorchModel(module, str(path), name, shape, compile)


def describe(handle: TorchModel) -> dict[str, Any]:
    """torch.compile on or off, torch's intra-op threads and torch's version."""
    import torch

    return {"compile": handle.compile, "threads": torch.get_num_threads(), "torch_version": torch.__version__}


def input_spec(handle: TorchModel) -> tuple[str, list[int | None], Any]:
    """(name, shape with None for dynamic dims, numpy dtype) of the first input."""
    return handle.input_name, list(handle.input_shape), np.dtype(np.float32)


def prepare(handle: TorchModel, x: np.ndarray) -> Any:
    """`x` as a float32 tensor sharing its memory; done outside timed loops."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def invoke(handle: TorchModel, x: Any) -> Any:
    """One inference on a prepared tensor, without autograd bookkeeping."""
    import torch

    with torch.inference_mode():
        return handle.module(x)


def run(handle: TorchModel, x: np.ndarray) -> np.ndarray:
    """First output for input `x`, as numpy."""
    return invoke(handle, prepare(handle, x)).numpy()


def version() -> str | None:
    """torch's version string, or None if unknown."""
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None
