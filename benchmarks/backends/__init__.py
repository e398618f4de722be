"""Runtime backends: one small module each, imported only when chosen."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

__all__ = ["BACKENDS", "load_backend", "backend_for", "available"]

BACKENDS = ("onnxruntime", "litert", "tflite_runtime", "torch")

# The package each backend needs, checked without importing it.
_REQUIRES = {
    "onnxruntime": "onnxruntime",
    "litert": "ai_edge_litert",
    "tflite_runtime": "tflite_runtime",
    "torch": "torch",
}
_MODULES = {"torch": "torch_eager"}  # a module named torch.py would read as the library itself


def _check(name: str) -> None:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known backends: {', '.join(BACKENDS)}")


def load_backend(name: str) -> ModuleType:
    """Import and return backend module `name`: load, describe, input_spec, prepare, invoke, run, version."""
    _check(name)
    return importlib.import_module(f"{__name__}.{_MODULES.get(name, name)}")


def available(name: str) -> bool:
    """Whether the runtime behind backend `name` is installed (found, not imported)."""
    _check(name)
    try:
        return importlib.util.find_spec(_REQUIRES[name]) is not None
    except (ImportError, ValueError):
        return False


def backend_for(path: str | Path) -> str:
    """Default backend for a model file, chosen by its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        return "onnxruntime"
    if suffix == ".tflite":
        # LiteRT is the maintained successor; tflite_runtime serves boards that only ship that wheel.
        if available("litert") or not available("tflite_runtime"):
            return "litert"
        return "tflite_runtime"
    if suffix == ".pt2":
        return "torch"
    raise ValueError(f"{path}: cannot pick a backend for suffix {suffix!r}; expected .onnx, .tflite or .pt2")
