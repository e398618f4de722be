"""One loader per teacher kind, registered in `LOADERS` with the `TeacherSource` fields that kind takes.

A loader builds the model and loads its weights (nothing downloads); `load_teacher` checks the result.
Adding a kind is one `_kind` registration here, or a plugin module named in the `edgekd.teacher_kinds` entry
points; `LOADERS` is `toolkit.extensions.TEACHER_KINDS`, which a config's `source.kind` is checked against.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from toolkit.config import FACTORY_SPEC, TeacherSource
from toolkit.errors import ConfigError, first_line
from toolkit.extensions import TEACHER_KINDS
from toolkit.models.registry import MODELS
from toolkit.models.spec import ModelSpec, create_model
from toolkit.models.teacher_files import load_weights, read_weights, state_dict_of, torch_load

__all__ = ["LOADERS", "ExportedProgramModule", "TeacherKind"]

# (source, input shape CHW, number of classes, map_location) -> (module, description fields of this kind)
Loader = Callable[[TeacherSource, tuple[int, ...], int, Any], tuple[Any, dict]]


@dataclass(frozen=True)
class TeacherKind:
    """How one kind of source loads, and which `TeacherSource` fields it needs and also accepts."""

    load: Loader
    needs: tuple[str, ...]
    accepts: tuple[str, ...] = ()
    model_file: bool = False  # `path` is the model file: its kind is detected and must agree
    feature_taps: bool = (
        True  # False for compiled graphs, whose submodules run no forward hooks: logit KD only
    )
    weights_file: bool = False  # `path` holds weights only (`edgekd export --model ... --weights FILE`)
    library: bool = False  # written `library:name` (`TeacherSource.parse`); weights from a local file


LOADERS = TEACHER_KINDS


def _kind(name: str, **rules: Any) -> Callable[[Loader], Loader]:
    """Register the decorated loader in `LOADERS` as kind `name`, with its field rules."""

    def add(load: Loader) -> Loader:
        LOADERS.register(TeacherKind(load, **rules), name=name)
        return load

    return add


class ExportedProgramModule(nn.Module):
    """Runs an ExportedProgram's module; train/eval only set the flag (its ops were fixed at export)."""

    def __init__(self, graph: nn.Module, batch: int | None = None) -> None:
        super().__init__()
        self.program = graph
        self.batch = batch  # the batch size the program was exported with, when it is fixed

    def train(self, mode: bool = True):
        # The unlifted graph module raises on train()/eval(), so do not recurse into it.
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch is None or len(x) == self.batch:
            return self.program(x)
        # A program exported with a fixed batch (often 1) takes exactly that many: feed it in pieces.
        outs = []
        for start in range(0, len(x), self.batch):
            piece = x[start : start + self.batch]
            short = self.batch - len(piece)
            if short:
                piece = torch.cat([piece, piece.new_zeros((short, *piece.shape[1:]))])
            outs.append(self.program(piece)[: self.batch - short])
        return torch.cat(outs)


def _static_batch(program) -> int | None:
    """The first user input's batch size when the program fixed it at export, else None (dynamic)."""
    user = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user:
            dim = getattr(node.meta.get("val"), "shape", [None])[0]
            return dim if isinstance(dim, int) else None
    return None


@_kind("checkpoint", needs=("path",), model_file=True)
def _checkpoint(src: TeacherSource, input_shape, num_classes: int, map_location):
    path = src.path
    ckpt = torch_load(path, map_location)
    try:
        spec = ModelSpec.from_dict(ckpt["spec"])
    except Exception as e:
        raise ConfigError(f"{path}: checkpoint 'spec' is malformed: {first_line(e)}") from e
    if tuple(spec.input_shape) != tuple(input_shape):
        raise ConfigError(
            f"{path}: checkpoint expects inputs {tuple(spec.input_shape)}, not {tuple(input_shape)}"
        )
    try:
        model = create_model(spec)
    except ValueError as e:
        raise ConfigError(f"{path}: {first_line(e)}") from e
    load_weights(model, state_dict_of(ckpt, path), path, spec.arch)
    return model, {"arch": spec.arch, "kwargs": spec.kwargs, "spec": spec.to_dict(), "info": ckpt.get("info")}


@_kind("state_dict", needs=("path", "arch"), accepts=("kwargs",), model_file=True, weights_file=True)
def _state_dict(src: TeacherSource, input_shape, num_classes: int, map_location):
    if src.arch not in MODELS:
        raise ConfigError(f"{src.path}: unknown arch {src.arch!r}; known: {', '.join(MODELS.names())}")
    defaults = dict(in_chans=input_shape[0], num_classes=num_classes, input_size=input_shape[1])
    model = MODELS.create(src.arch, **dict(defaults, **src.kwargs))
    load_weights(model, read_weights(src.path, map_location), src.path, src.arch)
    return model, {"arch": src.arch, "kwargs": src.kwargs}


@_kind("torchscript", needs=("path",), model_file=True, feature_taps=False)
def _torchscript(src: TeacherSource, input_shape, num_classes: int, map_location):
    try:
        with warnings.catch_warnings():
            # torch.jit is deprecated upstream, but a user's TorchScript file is a valid teacher.
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(src.path), map_location=map_location), {}
    except Exception as e:
        raise ConfigError(f"{src.path}: not a loadable TorchScript file: {first_line(e)}") from e


@_kind("exported_program", needs=("path",), model_file=True, feature_taps=False)
def _exported_program(src: TeacherSource, input_shape, num_classes: int, map_location):
    try:  # map_location does not apply: torch.export.load restores tensors where they were saved
        program = torch.export.load(str(src.path))
        return ExportedProgramModule(program.module(), _static_batch(program)), {}
    except Exception as e:
        raise ConfigError(f"{src.path}: not a loadable torch.export program: {first_line(e)}") from e


@_kind("factory", needs=("factory",), accepts=("path", "kwargs"), weights_file=True)
def _factory(src: TeacherSource, input_shape, num_classes: int, map_location):
    fn = _import_factory(src.factory)
    try:
        model = fn(**src.kwargs)
    except Exception as e:
        raise ConfigError(f"{src.factory}: calling it failed: {first_line(e)}") from e
    if src.path is not None and isinstance(model, nn.Module):
        load_weights(model, read_weights(src.path, map_location), src.path, src.factory)
    return model, {"factory": src.factory, "kwargs": src.kwargs}


def _import_factory(spec: str):
    module_name, _, attr = spec.partition(":")
    if not FACTORY_SPEC.match(spec):
        raise ConfigError(f"{spec}: a factory must be written 'package.module:callable'")
    try:
        obj = importlib.import_module(module_name)
    except Exception as e:
        raise ConfigError(f"{spec}: cannot import module {module_name!r}: {first_line(e)}") from e
    for name in attr.split("."):
        if not hasattr(obj, name):
            raise ConfigError(f"{spec}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, name)
    if not callable(obj):
        raise ConfigError(f"{spec}: {attr!r} is not callable")
    return obj


@_kind("timm", needs=("arch", "path"), accepts=("kwargs",), weights_file=True, library=True)
def _timm(src: TeacherSource, input_shape, num_classes: int, map_location):
    timm = _import_library("timm", src.label())
    return _library_model(
        src,
        lambda: timm.create_model(
            src.arch, pretrained=False, num_classes=num_classes, in_chans=input_shape[0], **src.kwargs
        ),
        map_location,
    )


@_kind("torchvision", needs=("arch", "path"), accepts=("kwargs",), weights_file=True, library=True)
def _torchvision(src: TeacherSource, input_shape, num_classes: int, map_location):
    models = _import_library("torchvision.models", src.label())
    return _library_model(
        src,
        lambda: models.get_model(src.arch, weights=None, num_classes=num_classes, **src.kwargs),
        map_location,
    )


def _import_library(module: str, where: str):
    name = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except Exception as e:  # CUDA-only wheels fail with OSError/RuntimeError as well as ImportError
        raise ConfigError(
            f"{where}: the {name} library failed to import ({type(e).__name__}: {first_line(e)}); "
            "install a build that imports here or use another teacher source"
        ) from e


def _library_model(src: TeacherSource, build: Callable[[], nn.Module], map_location):
    """A timm/torchvision model built without pretrained weights, then loaded from the local file."""
    where = src.label()
    try:
        model = build()
    except Exception as e:
        raise ConfigError(f"{where}: cannot build the model: {first_line(e)}") from e
    load_weights(model, read_weights(src.path, map_location), src.path, where)
    return model, {"arch": src.arch, "kwargs": src.kwargs}
