"""LiteRT (ai_edge_litert) backend; quantized int8/uint8 models take and return floats."""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from benchmarks.backends import Backend, register_backend
from benchmarks.errors import InputError, first_line

__all__ = ["TfliteModel", "load", "describe", "input_spec", "prepare", "invoke", "run", "profile", "version"]

register_backend(
    Backend("litert", {"tflite": ".tflite"}, requires="ai_edge_litert", distribution="ai_edge_litert",
            module=__name__)
)  # fmt: skip

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
    runtime: str = "litert"
    threads: int = 1
    xnnpack: bool = True
    delegate: str | None = None
    delegate_options: dict[str, str] = field(default_factory=dict)


def _load_delegate(api: ModuleType, path: str | Path, delegate: str, options: dict[str, str]) -> Any:
    """`api.load_delegate(delegate, options)`; a path that is not a file, or a failed load, names it."""
    # A bare name ("libedgetpu.so.1") is found by the dynamic loader, so only paths are checked here.
    if os.sep in delegate or "/" in delegate:
        if not Path(delegate).is_file():
            raise InputError(f"{delegate}: delegate library not found (asked for to run {path})")
    # Open it with ctypes first: the runtime's Delegate prints a stray traceback when dlopen fails.
    try:
        library = ctypes.CDLL(delegate)
    except OSError as exc:
        raise InputError(f"{delegate}: cannot load delegate for {path} ({first_line(exc)})") from exc
    if not hasattr(library, "tflite_plugin_create_delegate"):
        raise InputError(f"{delegate}: not an external delegate (no tflite_plugin_create_delegate symbol)")
    try:
        return api.load_delegate(delegate, options)
    except (ValueError, RuntimeError) as exc:
        # The first line only repeats "Failed to load delegate from ..."; the delegate's reason follows.
        lines = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()] or [first_line(exc)]
        raise InputError(f"{delegate}: cannot load delegate for {path} ({lines[0]})") from exc


def _build_error(path: str | Path, runtime: str, exc: BaseException) -> InputError:
    """A one-line InputError for an interpreter that failed to build."""
    first = first_line(exc)
    # tflite_runtime stopped at 2.14; models from newer converters use op versions it does not know.
    if runtime == "tflite_runtime" and "find op for builtin opcode" in first:
        return InputError(
            f"{path}: tflite_runtime {_version('tflite-runtime') or '(unknown version)'} "
            f"cannot run this model ({first}); use ai-edge-litert"
        )
    return InputError(f"{path}: {runtime} cannot build an interpreter ({first})")


def _load(
    api: ModuleType,
    path: str | Path,
    *,
    threads: int,
    runtime: str,
    xnnpack: bool = True,
    delegate: str | Path | None = None,
    delegate_options: dict[str, Any] | None = None,
) -> TfliteModel:
    """Build and allocate an interpreter from the `api` module; shared by litert and tflite_runtime."""
    if delegate_options and delegate is None:
        raise InputError(f"{path}: delegate_options given without a delegate")
    delegate = str(delegate) if delegate else None
    options = {str(k): str(v) for k, v in (delegate_options or {}).items()}
    delegates = [_load_delegate(api, path, delegate, options)] if delegate else []
    # AUTO applies XNNPACK by default; this resolver leaves the reference CPU kernels alone.
    resolver = api.OpResolverType.AUTO if xnnpack else api.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interp = api.Interpreter(
            model_path=str(path),
            num_threads=threads,
            experimental_delegates=delegates or None,
            experimental_op_resolver_type=resolver,
        )
        interp.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        raise _build_error(path, runtime, exc) from exc
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
        runtime=runtime,
        threads=threads,
        xnnpack=xnnpack,
        delegate=delegate,
        delegate_options=options,
    )


def load(
    path: str | Path,
    *,
    threads: int,
    xnnpack: bool = True,
    delegate: str | Path | None = None,
    delegate_options: dict[str, Any] | None = None,
) -> TfliteModel:
    """Open `path` with ai_edge_litert's interpreter; XNNPACK on or off, optionally an external delegate."""
    from ai_edge_litert import interpreter as api

    return _load(
        api,
        path,
        threads=threads,
        runtime="litert",
        xnnpack=xnnpack,
        delegate=delegate,
        delegate_options=delegate_options,
    )


def describe(handle: TfliteModel) -> dict[str, Any]:
    """How the interpreter was built: runtime, threads, XNNPACK, external delegate and its options."""
    return {
        "runtime": handle.runtime,
        "threads": handle.threads,
        "xnnpack": handle.xnnpack,
        "delegate": handle.delegate,
        "delegate_options": dict(handle.delegate_options),
    }


def input_spec(handle: TfliteModel) -> tuple[str, list[int | None], Any]:
    """(name, shape with None for dynamic dims, numpy dtype) of the first input."""
    return handle.input_name, list(handle.shape_signature), handle.input_dtype


def _resize(handle: TfliteModel, shape: tuple[int, ...]) -> None:
    try:
        handle.interpreter.resize_tensor_input(handle.input_index, list(shape))
        handle.interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        raise InputError(
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


def profile(path: str | Path, x: np.ndarray, *, threads: int, runs: int, warmup: int):
    """The op list with dtypes, untimed (`benchmarks.profile.list_tflite_ops`): LiteRT's Python API has no
    op profiler."""
    from benchmarks.profile import list_tflite_ops

    return list_tflite_ops(path)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def version() -> str | None:
    """ai-edge-litert's version string, or None if unknown."""
    return _version("ai-edge-litert")
