"""The registries of the extension points whose entries live above the config: distillation methods, export
formats and teacher kinds. They sit below `toolkit.config` so that a config is checked against what is
registered; each loads edgekd's own entries (and third parties', by entry point) on its first lookup, so
every name is written once, where its entry registers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.registry import Registry

__all__ = ["DistillMethod", "DISTILL_METHODS", "EXPORTERS", "TEACHER_KINDS", "register_method"]


def _importer(*modules: str) -> Callable[[], None]:
    def load() -> None:
        for module in modules:
            importlib.import_module(module)

    return load


@dataclass(frozen=True)
class DistillMethod:
    """A distillation method (`distill.methods`): its loss term, its own options and whether it taps features.

    `term(options, settings, *, model, teachers, x)` builds the method's `toolkit.distill.losses.LossTerm`;
    `options` is the pydantic model of its config block, `distill.<name>:` (None: it takes none).
    """

    name: str
    term: Callable[..., Any]
    options: type | None = None
    # Taps teacher features: its targets cannot be cached, so the teacher runs on every batch.
    taps_features: bool = False

    def default_options(self) -> Any:
        return self.options() if self.options is not None else None


DISTILL_METHODS = Registry(
    "distillation method", group="edgekd.distill_methods", builtins=_importer("toolkit.distill.losses")
)
EXPORTERS = Registry(
    "export format",
    group="edgekd.exporters",
    builtins=_importer(*(f"export.exporters.{m}" for m in ("onnx", "tflite", "pt2", "pte"))),
)
TEACHER_KINDS = Registry(
    "teacher kind", group="edgekd.teacher_kinds", builtins=_importer("toolkit.models.teacher_kinds")
)


def register_method(method: DistillMethod) -> DistillMethod:
    """Register a distillation method (the one line each method's module runs)."""
    return DISTILL_METHODS.register(method, name=method.name)
