"""Runtime backends: one module each, which declares itself with `register_backend(Backend(...))`.

The modules of this package are the built-in backends; a third party adds one through the `edgekd.backends`
entry-point group (a module that calls `register_backend` when imported). A backend module keeps its runtime's
import inside its functions, so declaring it costs nothing where that runtime is absent.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from benchmarks.errors import InputError
from benchmarks.registry import Registry

__all__ = [
    "Backend",
    "register_backend",
    "backend_names",
    "backend_spec",
    "backend_specs",
    "load_backend",
    "backend_for",
    "available",
    "file_suffixes",
    "suffixes_text",
    "EXECUTORCH_DTYPES",
]

# ExecuTorch's ScalarType codes (torch's), as both `.pte` runtimes report an input's dtype -> numpy dtype name
EXECUTORCH_DTYPES = {0: "uint8", 1: "int8", 3: "int32", 4: "int64", 5: "float16", 6: "float32"}


@dataclass(frozen=True)
class Backend:
    """What a backend runs and needs; its module has load, describe, input_spec, prepare, invoke, run."""

    name: str
    formats: dict[str, str]  # the manifest formats it runs -> their file suffix, e.g. {"onnx": ".onnx"}
    requires: str  # the import name of its runtime, found without importing it
    distribution: str  # the runtime's name as `pip list` shows it (parity records name runtimes so)
    module: str  # where its functions live
    rank: int = 0  # among backends of one format, the lowest installed one is the default


def _builtins() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


BACKENDS = Registry("backend", group="edgekd.backends", builtins=_builtins)


def register_backend(spec: Backend) -> Backend:
    """Register a backend (the one line each backend module runs)."""
    return BACKENDS.register(spec, name=spec.name)


def backend_names() -> list[str]:
    return BACKENDS.names()


def backend_spec(name: str) -> Backend:
    return BACKENDS.get(name)


def backend_specs() -> list[Backend]:
    """Every registered backend, by name."""
    return [BACKENDS.get(n) for n in BACKENDS.names()]


def load_backend(name: str) -> ModuleType:
    """Import and return backend module `name`: load, describe, input_spec, prepare, invoke, run, version."""
    return importlib.import_module(BACKENDS.get(name).module)


def available(name: str) -> bool:
    """Whether the runtime behind backend `name` is installed (found, not imported)."""
    requires = BACKENDS.get(name).requires  # an unknown name raises, listing the known ones
    try:
        return importlib.util.find_spec(requires) is not None
    except (ImportError, ValueError):  # a broken or half-removed install counts as absent
        return False


def file_suffixes() -> dict[str, str]:
    """Every model file format a registered backend runs -> its suffix, by format name."""
    return dict(sorted((fmt, suffix) for spec in BACKENDS.values() for fmt, suffix in spec.formats.items()))


def suffixes_text() -> str:
    """The model file suffixes, for messages: '.onnx, .pte, .tflite or .pt2'."""
    *most, last = file_suffixes().values()
    return f"{', '.join(most)} or {last}" if most else last


def backend_for(path: str | Path) -> str:
    """Default backend for a model file, by its suffix: the best-ranked installed one, else the best."""
    suffix = Path(path).suffix.lower()
    specs = sorted((s for s in BACKENDS.values() if suffix in s.formats.values()), key=lambda s: s.rank)
    if not specs:
        known = ", ".join(file_suffixes().values())
        raise InputError(f"{path}: cannot pick a backend for suffix {suffix!r}; expected {known}")
    return next((s.name for s in specs if available(s.name)), specs[0].name)
