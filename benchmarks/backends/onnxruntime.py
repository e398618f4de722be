"""ONNX Runtime backend on the CPU execution provider."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

__all__ = ["OrtModel", "load", "input_spec", "prepare", "invoke", "run", "version"]

_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}


@dataclass
class OrtModel:
    """A session plus its first input's name, looked up once so `run` does no lookups."""

    session: ort.InferenceSession
    input_name: str
    path: str


def load(path: str | Path, *, threads: int) -> OrtModel:
    """Open `path` as a CPU session with `threads` intra-op threads and sequential execution."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    return OrtModel(session, session.get_inputs()[0].name, str(path))


def input_spec(handle: OrtModel) -> tuple[str, list[int | None], Any]:
    """(name, shape with None for dynamic dims, numpy dtype) of the first input."""
    inp = handle.session.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else None for d in inp.shape]
    if inp.type not in _DTYPES:
        raise ValueError(
            f"{handle.path}: input {inp.name!r} has unsupported type {inp.type}; "
            f"expected one of {sorted(_DTYPES)}"
        )
    return inp.name, shape, np.dtype(_DTYPES[inp.type])


def prepare(handle: OrtModel, x: np.ndarray) -> dict[str, np.ndarray]:
    """The feed dict for `x`, built once outside timed loops."""
    return {handle.input_name: x}


def invoke(handle: OrtModel, feed: dict[str, np.ndarray]) -> np.ndarray:
    """One inference on a prepared feed; first output."""
    return handle.session.run(None, feed)[0]


def run(handle: OrtModel, x: np.ndarray) -> np.ndarray:
    """First output for input `x`."""
    return invoke(handle, prepare(handle, x))


def version() -> str:
    """onnxruntime's version string."""
    return ort.__version__
