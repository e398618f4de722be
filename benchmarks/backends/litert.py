"""LiteRT (ai_edge_litert) backend; quantized int8/uint8 models take and return floats."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TfliteModel", "load", "input_spec", "prepare", "invoke", "run", "version"]

_QUANTIZED = (np.int8, np.uint8)


@dataclass
class TfliteModel:
    """An allocated interpreter and everything `run` needs, precomputed at load."""

    interpreter: Any
    path: str
    input_index: int
    output_index: int
    input_name: str
    input_shape: tuple[int, ...]  # currently allocated shape
    shape_signature: list[int | None]
    input_dtype: Any
    input_quant: tuple[float, int]
    output_dtype: Any
    output_quant: tuple[float, int]


def _load(interpreter_cls: Any, path: str | Path, threads: int) -> TfliteModel:
    """Build and allocate an interpreter of `interpreter_cls`; shared by litert and tflite_runtime."""
    interp = interpreter_cls(model_path=str(path), num_threads=threads)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    # shape_signature keeps -1 for dynamic dims; old tflite_runtime builds lack it.
    signature = inp.get("shape_signature", inp["shape"])
    return TfliteModel(
        interpreter=interp,
        path=str(path),
        input_index=inp["index"],
        output_index=out["index"],
        input_name=inp["name"],
        input_shape=tuple(int(d) for d in inp["shape"]),
        shape_signature=[int(d) if d > 0 else None for d in signature],
        input_dtype=np.dtype(inp["dtype"]),
        input_quant=(float(inp["quantization"][0]), int(inp["quantization"][1])),
        output_dtype=np.dtype(out["dtype"]),
        output_quant=(float(out["quantization"][0]), int(out["quantization"][1])),
    )


def load(path: str | Path, *, threads: int) -> TfliteModel:
    """Open `path` with ai_edge_litert's interpreter using `threads` threads."""
    from ai_edge_litert.interpreter import Interpreter

    return _load(Interpreter, path, threads)


def input_spec(handle: TfliteModel) -> tuple[str, list[int | None], Any]:
    """(name, shape with None for dynamic dims, numpy dtype) of the first input."""
    return handle.input_name, list(handle.shape_signature), handle.input_dtype


def _resize(handle: TfliteModel, shape: tuple[int, ...]) -> None:
    try:
        handle.interpreter.resize_tensor_input(handle.input_index, list(shape))
        handle.interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        raise ValueError(
            f"{handle.path}: cannot resize input from {list(handle.input_shape)} to {list(shape)} ({exc})"
        ) from exc
    handle.input_shape = shape


def _quantize(x: np.ndarray, dtype: Any, scale: float, zero_point: int) -> np.ndarray:
    if scale == 0.0:  # no quantization parameters: the model takes raw integers
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def prepare(handle: TfliteModel, x: np.ndarray) -> np.ndarray:
    """`x` as the model takes it (resized to, and quantized for, its input); done outside timed loops."""
    if x.shape != handle.input_shape:
        _resize(handle, x.shape)
    if handle.input_dtype in _QUANTIZED and x.dtype.kind == "f":
        x = _quantize(x, handle.input_dtype, *handle.input_quant)
    return np.ascontiguousarray(x, dtype=handle.input_dtype)


def invoke(handle: TfliteModel, x: np.ndarray) -> np.ndarray:
    """One inference on a prepared input: set, invoke, get (the raw, possibly quantized, output)."""
    interp = handle.interpreter
    interp.set_tensor(handle.input_index, x)
    interp.invoke()
    return interp.get_tensor(handle.output_index)


def run(handle: TfliteModel, x: np.ndarray) -> np.ndarray:
    """First output for float (or already typed) input `x`, dequantized if the model is quantized."""
    y = invoke(handle, prepare(handle, x))
    scale, zero_point = handle.output_quant
    if handle.output_dtype in _QUANTIZED and scale != 0.0:
        return (y.astype(np.float32) - zero_point) * scale
    return y


def version() -> str | None:
    """ai-edge-litert's version string, or None if unknown."""
    from importlib import metadata

    try:
        return metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:
        return None
