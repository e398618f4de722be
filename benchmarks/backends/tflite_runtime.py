"""tflite_runtime backend for boards that only ship that wheel; shares LiteRT's code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.backends import Backend, register_backend
from benchmarks.backends.litert import (
    TfliteModel,
    _load,
    _version,
    describe,
    input_spec,
    invoke,
    prepare,
    run,
)

__all__ = ["load", "describe", "input_spec", "prepare", "invoke", "run", "version"]

register_backend(
    Backend(
        "tflite_runtime", {"tflite": ".tflite"}, requires="tflite_runtime", distribution="tflite_runtime",
        module=__name__, rank=1,  # LiteRT is the maintained successor; this serves boards with only this
    )
)  # fmt: skip


def load(
    path: str | Path,
    *,
    threads: int,
    xnnpack: bool = True,
    delegate: str | Path | None = None,
    delegate_options: dict[str, Any] | None = None,
) -> TfliteModel:
    """Open `path` with tflite_runtime's interpreter; same options as the litert backend."""
    from tflite_runtime import interpreter as api

    return _load(
        api,
        path,
        threads=threads,
        runtime="tflite_runtime",
        xnnpack=xnnpack,
        delegate=delegate,
        delegate_options=delegate_options,
    )


def version() -> str | None:
    """tflite-runtime's version string, or None if unknown."""
    return _version("tflite-runtime")
