"""ONNX Runtime backend: CPU by default, or the execution providers asked for (CUDA, TensorRT, ...)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.backends import Backend, register_backend
from benchmarks.errors import InputError, first_line

if TYPE_CHECKING:
    import onnxruntime as ort

__all__ = [
    "OrtModel",
    "PROVIDERS",
    "OPTIMIZATION_LEVELS",
    "provider_names",
    "load",
    "describe",
    "input_spec",
    "prepare",
    "invoke",
    "run",
    "profile",
    "version",
]

register_backend(
    Backend("onnxruntime", {"onnx": ".onnx"}, requires="onnxruntime", distribution="onnxruntime",
            module=__name__)
)  # fmt: skip

_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}

# Short names users type; anything ending in "ExecutionProvider" is taken as a full EP name.
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "dml": "DmlExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "acl": "ACLExecutionProvider",
    "armnn": "ArmNNExecutionProvider",
}
_TENSORRT = PROVIDERS["tensorrt"]
# The PyPI package that carries each EP; onnxruntime and its variants cannot share one environment.
_PACKAGES = {
    "CUDAExecutionProvider": "onnxruntime-gpu",
    "TensorrtExecutionProvider": "onnxruntime-gpu",
    "OpenVINOExecutionProvider": "onnxruntime-openvino",
    "DmlExecutionProvider": "onnxruntime-directml",
    "QNNExecutionProvider": "onnxruntime-qnn",
}
_GPU = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}

# The names users type -> ORT's GraphOptimizationLevel members.
OPTIMIZATION_LEVELS = {
    "disabled": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


@dataclass
class OrtModel:
    """A session plus its first input's name, looked up once so `run` does no lookups."""

    session: ort.InferenceSession
    input_name: str
    path: str
    threads: int = 1
    trt_fp16: bool = False
    optimization: str = "all"


def provider_names(path: str | Path, providers: list[str] | None) -> list[str]:
    """Full EP names for `providers` (short or full names); each must be in this onnxruntime build."""
    if not providers:
        return [PROVIDERS["cpu"]]
    names = []
    for p in providers:
        name = p if p.endswith("ExecutionProvider") else PROVIDERS.get(p.lower())
        if name is None:
            raise InputError(
                f"{path}: unknown execution provider {p!r}; expected one of {', '.join(PROVIDERS)} "
                "or a full name such as 'CUDAExecutionProvider'"
            )
        names.append(name)
    import onnxruntime as ort

    built = ort.get_available_providers()
    for name in names:
        if name not in built:
            hint = f"install {_PACKAGES.get(name, 'an onnxruntime build with it')} in place of onnxruntime"
            if name in _GPU:
                hint += " (on a Jetson: the onnxruntime-gpu wheel built for your JetPack)"
            raise InputError(
                f"{path}: execution provider {name} is not in this onnxruntime {ort.__version__} build "
                f"(it has {', '.join(built)}); {hint}"
            )
    return names


def _check_options(path: str | Path, names: list[str], trt_fp16: bool, optimization: str) -> None:
    """Reject option combinations that would silently do nothing."""
    if optimization not in OPTIMIZATION_LEVELS:
        raise InputError(
            f"{path}: unknown optimization {optimization!r}; expected one of {', '.join(OPTIMIZATION_LEVELS)}"
        )
    if trt_fp16 and _TENSORRT not in names:
        raise InputError(f"{path}: trt_fp16 needs the tensorrt provider, got providers {names}")


def _load_reason(exc: BaseException, path: str | Path) -> str:
    """`CODE: reason` from ORT's `[ONNXRuntimeError] : 7 : CODE : Load model from PATH failed:reason`."""
    text = first_line(exc)
    m = re.match(r"\[ONNXRuntimeError\] : \d+ : (\w+) : (.*)", text)
    if m is None:
        return text
    reason = m.group(2).removeprefix(f"Load model from {path} failed:")
    return f"{m.group(1)}: {reason.strip()}"


def load(
    path: str | Path,
    *,
    threads: int,
    providers: list[str] | None = None,
    trt_fp16: bool = False,
    optimization: str = "all",
) -> OrtModel:
    """Open `path` with `threads` intra-op threads, sequential execution and the given providers."""
    import onnxruntime as ort

    names = provider_names(path, providers)
    _check_options(path, names, trt_fp16, optimization)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[optimization])
    # Published Jetson figures are TensorRT fp16; the flag is always passed so the record says which ran.
    options = [{"trt_fp16_enable": str(trt_fp16)} if n == _TENSORRT else {} for n in names]
    try:
        session = ort.InferenceSession(
            str(path), sess_options=opts, providers=names, provider_options=options
        )
    except Exception as exc:  # ORT's error types (InvalidProtobuf, Fail, ...) live in a private module
        raise InputError(f"{path}: onnxruntime cannot load it ({_load_reason(exc, path)})") from exc
    # ORT drops an EP whose libraries fail to load (with only a warning) and runs on the CPU instead.
    missing = [n for n in names if n not in session.get_providers()]
    if missing:
        raise InputError(
            f"{path}: onnxruntime could not start {', '.join(missing)} (running on "
            f"{', '.join(session.get_providers())}); check its CUDA/TensorRT libraries"
        )
    return OrtModel(session, session.get_inputs()[0].name, str(path), threads, trt_fp16, optimization)


def describe(handle: OrtModel) -> dict[str, Any]:
    """What the session really runs with: providers in use, TensorRT fp16, threads, graph optimization."""
    return {
        "providers": list(handle.session.get_providers()),
        "trt_fp16": handle.trt_fp16,
        "threads": handle.threads,
        "graph_optimization": handle.optimization,
    }


def input_spec(handle: OrtModel) -> tuple[str, list[int | None], Any]:
    """(name, shape with None for dynamic dims, numpy dtype) of the first input."""
    inp = handle.session.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else None for d in inp.shape]
    if inp.type not in _DTYPES:
        raise InputError(
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


def profile(path: str | Path, x: np.ndarray, *, threads: int, runs: int, warmup: int):
    """Per-node times from onnxruntime's session profiler (`benchmarks.profile.profile_onnx`)."""
    from benchmarks.profile import profile_onnx

    return profile_onnx(path, x, threads=threads, runs=runs, warmup=warmup)


def version() -> str:
    """onnxruntime's version string."""
    import onnxruntime as ort

    return ort.__version__
