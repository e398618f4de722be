"""tflite_runtime backend for boards that only ship that wheel; shares LiteRT's code."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from benchmarks.backends.litert import TfliteModel, _load, input_spec, invoke, prepare, run

__all__ = ["load", "input_spec", "prepare", "invoke", "run", "version"]


def load(path: str | Path, *, threads: int) -> TfliteModel:
    """Open `path` with tflite_runtime's interpreter using `threads` threads."""
    from tflite_runtime.interpreter import Interpreter

    return _load(Interpreter, path, threads)


def version() -> str | None:
    """tflite-runtime's version string, or None if unknown."""
    try:
        return metadata.version("tflite-runtime")
    except metadata.PackageNotFoundError:
        return None
