"""Load a teacher from where it lives: an edgekd checkpoint, a state dict, TorchScript, a `.pt2` program,
a user factory, or timm / torchvision (local weights only; nothing downloads).

`TeacherSource` (the description, in `toolkit.config`) names the kind; `teacher_kinds.LOADERS` holds one
loader per kind; this module checks the source, detects a file's kind and checks the loaded model.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from toolkit.config import SourceKind, TeacherSource, library_kinds
from toolkit.errors import ConfigError
from toolkit.models.teacher_files import container, first_line, sha256, state_dict_of, torch_load
from toolkit.models.teacher_kinds import LOADERS, ExportedProgramModule

__all__ = [
    "ExportedProgramModule",
    "SourceKind",
    "TeacherSource",
    "check_source",
    "detect_kind",
    "load_teacher",
]

_AUTO_FIELDS = (("path",), ("arch", "kwargs"))  # kind "auto": a model file, or weights and their arch


def check_source(src: TeacherSource) -> None:
    """Raise `ConfigError` when the fields given do not fit `src.kind` (checked before any file is read)."""
    where = src.label()
    if src.kind != "auto" and src.kind not in LOADERS:
        known = ", ".join(["auto", *LOADERS.names()])
        raise ConfigError(f"{where}: unknown teacher kind {src.kind!r}; known: {known}")
    kind = LOADERS.get(src.kind) if src.kind != "auto" else None
    needs, accepts = (kind.needs, kind.accepts) if kind is not None else _AUTO_FIELDS
    for name in needs:
        if not getattr(src, name):
            local = name == "path" and src.kind in library_kinds()
            what = "path (a local weights file; nothing is downloaded)" if local else name
            raise ConfigError(f"{where}: teacher kind {src.kind!r} needs {what}")
    for name in ("path", "arch", "factory", "kwargs"):
        if getattr(src, name) and name not in needs + accepts:
            raise ConfigError(f"{where}: {name} does not apply to teacher kind {src.kind!r}")


def detect_kind(path: str | os.PathLike, map_location="cpu") -> str:
    """The teacher kind of a file: checkpoint, state_dict, torchscript or exported_program."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: teacher file not found")
    found = container(path)
    if found in ("torchscript", "exported_program"):
        return found
    if found == "safetensors":
        return "state_dict"
    obj = torch_load(path, map_location)
    if isinstance(obj, dict) and "spec" in obj and "state_dict" in obj:
        return "checkpoint"
    state_dict_of(obj, path)  # raises when it is not weights either
    return "state_dict"


def _resolve_kind(src: TeacherSource, map_location) -> str:
    """The kind to load: the file's for "auto"; a model file must be of the kind given."""
    if src.kind != "auto" and not LOADERS.get(src.kind).model_file:
        return src.kind
    found = detect_kind(src.path, map_location)
    if src.kind == "auto":
        if found == "state_dict" and not src.arch:
            raise ConfigError(f"{src.path}: a plain state dict; name its architecture (arch) to build it")
        if found != "state_dict" and (src.arch or src.kwargs):
            raise ConfigError(f"{src.path}: arch and kwargs do not apply to a {found} file")
        return found
    # An edgekd checkpoint also holds a state dict.
    if found != src.kind and not (src.kind == "state_dict" and found == "checkpoint"):
        raise ConfigError(f"{src.path}: teacher kind {src.kind!r} given, but the file is a {found} file")
    return src.kind


def _check_output(model, where: str, input_shape, num_classes: int) -> None:
    x = torch.zeros(1, *input_shape)
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as e:
        raise ConfigError(
            f"{where}: forward on a zeros input of shape {tuple(x.shape)} failed: {first_line(e)}"
        ) from e
    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if got != (1, num_classes):
        raise ConfigError(
            f"{where}: output is {got} for one input, expected logits of shape (1, {num_classes})"
        )


def load_teacher(
    source: TeacherSource | str | os.PathLike,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    map_location="cpu",
):
    """Build and load the teacher `source` names; returns (model in eval mode, JSON-ready description).

    Raises `ConfigError` (one line naming the file or factory) when it cannot load or does not output
    logits of shape (1, num_classes) for one input of `input_shape` (C, H, W).
    """
    src = source if isinstance(source, TeacherSource) else TeacherSource.parse(source)
    check_source(src)
    where = src.label()
    if src.path is not None and not src.path.is_file():
        raise ConfigError(f"{src.path}: teacher file not found")
    kind = _resolve_kind(src, map_location)
    loader = LOADERS.get(kind)
    model, extra = loader.load(src, tuple(input_shape), num_classes, map_location)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{where}: built a {type(model).__name__}, not a torch nn.Module")
    model.eval()
    _check_output(model, where, input_shape, num_classes)
    description = {
        "kind": kind,
        "path": str(src.path) if src.path else None,
        "sha256": sha256(src.path) if src.path else None,
        **extra,
        "params": sum(p.numel() for p in model.parameters()),
        "feature_taps": loader.feature_taps,
    }
    return model, description
