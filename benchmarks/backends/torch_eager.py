"""PyTorch reference backend: runs a `.pt2` ExportedProgram eagerly on the CPU (only where torch exists)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TorchModel", "load", "input_spec", "prepare", "invoke", "run", "version"]


@dataclass
class TorchModel:
    module: Any
    path: str
    input_shape: list[int | None]


def load(path: str | Path, *, threads: int) -> TorchModel:
    """Load an ExportedProgram and set torch's intra-op threads to `threads`."""
    import torch

    torch.set_num_threads(threads)
    program = torch.export.load(str(path))
    spec = program.graph_signature.user_inputs[0]
    meta = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == spec).meta["val"]
    shape = [d if isinstance(d, int) else None for d in meta.shape]
    return TorchModel(program.module(), str(path), shape)


def input_spec(handle: TorchModel) -> tuple[str, list[int | None], Any]:
    return "input", list(handle.input_shape), np.dtype(np.float32)


def prepare(handle: TorchModel, x: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def invoke(handle: TorchModel, x) -> Any:
    import torch

    with torch.inference_mode():
        return handle.module(x)


def run(handle: TorchModel, x: np.ndarray) -> np.ndarray:
    return invoke(handle, prepare(handle, x)).numpy()


def version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None
