"""Load a teacher from where it lives: an edgekd checkpoint, a state dict, TorchScript, a `.pt2` program,
a user factory, or timm / torchvision (local weights only; nothing downloads)."""

from __future__ import annotations

import hashlib
import importlib
import os
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import nn

from toolkit.errors import ConfigError
from toolkit.models.registry import MODELS
from toolkit.models.spec import ModelSpec, create_model

__all__ = [
    "KINDS",
    "ExportedProgramModule",
    "SourceKind",
    "TeacherSource",
    "check_source",
    "detect_kind",
    "load_teacher",
]

SourceKind = Literal[
    "auto", "checkpoint", "state_dict", "torchscript", "exported_program", "factory", "timm", "torchvision"
]
KINDS: tuple[str, ...] = get_args(SourceKind)
_FILE_KINDS = ("checkpoint", "state_dict", "torchscript", "exported_program")
_LIBRARIES = ("timm", "torchvision")
# `package.module:callable` (attribute path may be dotted); checked only when no such file exists.
_FACTORY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


@dataclass
class TeacherSource:
    """Where a teacher comes from; `kind="auto"` detects it from the file at `path`.

    `path` is the model file, or the weights for state_dict / factory / timm / torchvision. `arch` is a
    registry name (state_dict) or the library's model name; `factory` is `package.module:callable`.
    """

    kind: SourceKind = "auto"
    path: Path | None = None
    arch: str | None = None
    factory: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.path = Path(self.path) if self.path is not None else None

    @classmethod
    def parse(cls, spec: str | os.PathLike) -> TeacherSource:
        """A file (kind detected), or `timm:NAME`, `torchvision:NAME`, `package.module:callable` or a registry
        name, each optionally followed by `@WEIGHTS_FILE` (required for registry names and the libraries)."""
        text = os.fspath(spec)
        if Path(text).exists():
            return cls(path=Path(text))
        head, at, weights = text.rpartition("@") if "@" in text else (text, "", "")
        path = Path(weights) if at else None
        lib, sep, name = head.partition(":")
        if sep and lib in _LIBRARIES:
            return cls(kind=lib, arch=name, path=path)  # type: ignore[arg-type]
        if _FACTORY.match(head):
            return cls(kind="factory", factory=head, path=path)
        if at and re.fullmatch(r"[A-Za-z_][\w.-]*", head):
            return cls(kind="state_dict", arch=head, path=path)
        return cls(path=Path(text))

    def label(self) -> str:
        """How errors name this source: the file, else the factory or `library:name`."""
        if self.kind in _LIBRARIES:
            return f"{self.kind}:{self.arch}"
        return str(self.path or self.factory or self.arch or "teacher")


# Per kind: the fields it needs, then the further fields it accepts.
_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "auto": (("path",), ("arch", "kwargs")),
    "checkpoint": (("path",), ()),
    "state_dict": (("path", "arch"), ("kwargs",)),
    "torchscript": (("path",), ()),
    "exported_program": (("path",), ()),
    "factory": (("factory",), ("path", "kwargs")),
    "timm": (("arch", "path"), ("kwargs",)),
    "torchvision": (("arch", "path"), ("kwargs",)),
}


def check_source(src: TeacherSource) -> None:
    """Raise `ConfigError` when the fields given do not fit `src.kind` (checked before any file is read)."""
    where = src.label()
    if src.kind not in _FIELDS:
        raise ConfigError(f"{where}: unknown teacher kind {src.kind!r}; known: {', '.join(KINDS)}")
    needs, optional = _FIELDS[src.kind]
    for name in needs:
        if not getattr(src, name):
            local = name == "path" and src.kind in _LIBRARIES
            what = "path (a local weights file; nothing is downloaded)" if local else name
            raise ConfigError(f"{where}: teacher kind {src.kind!r} needs {what}")
    for name in ("path", "arch", "factory", "kwargs"):
        if getattr(src, name) and name not in needs + optional:
            raise ConfigError(f"{where}: {name} does not apply to teacher kind {src.kind!r}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].strip()


def _container(path: Path) -> str:
    # What holds the file: the marker entries inside torch's zip archives tell the three formats apart.
    if not zipfile.is_zipfile(path):
        return "safetensors" if path.suffix == ".safetensors" else "unknown"
    with zipfile.ZipFile(path) as zf:
        entries = {n.split("/", 1)[-1] for n in zf.namelist()}
    if "constants.pkl" in entries or any(e.startswith("code/") for e in entries):
        return "torchscript"
    if "archive_format" in entries or "serialized_exported_program.json" in entries:
        return "exported_program"
    if "data.pkl" in entries:
        return "torch_save"
    return "unknown"


def _torch_load(path: Path, map_location) -> Any:
    if not zipfile.is_zipfile(path):
        with path.open("rb") as f:
            if f.read(1) != b"\x80":  # torch.save writes a zip archive, or (legacy) a protocol-2+ pickle
                raise ConfigError(f"{path}: not a torch file (neither a zip archive nor a pickle)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch wraps the reason in a long advice text; keep only the unpickler's own words.
        text = str(e)
        if m := re.search(r"Unsupported global: GLOBAL (\S+)", text):
            raise ConfigError(
                f"{path}: holds a pickled {m.group(1)}, which a weights-only load refuses; "
                "save its state_dict, TorchScript or a torch.export .pt2 instead"
            ) from e
        after = text.split("WeightsUnpickler error:", 1)[-1]
        detail = next((line.strip() for line in after.splitlines() if line.strip()), "")
        raise ConfigError(f"{path}: not a readable torch file: {detail or _first_line(e)}") from e
    except Exception as e:
        raise ConfigError(f"{path}: not a readable torch file: {_first_line(e)}") from e


def _state_dict_of(obj: Any, path: Path) -> dict:
    # Common wrappers: edgekd checkpoints and training scripts keep the weights under one key.
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"{path}: not a state dict (expected a mapping of parameter names to tensors)")
    return obj


def _read_weights(path: Path, map_location) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: weights file not found")
    if _container(path) == "safetensors":
        try:
            from safetensors.torch import load_file
        except Exception as e:
            raise ConfigError(
                f"{path}: reading .safetensors needs the safetensors package: {_first_line(e)}"
            ) from e
        device = map_location if isinstance(map_location, str) else "cpu"
        try:
            return load_file(path, device=device)
        except Exception as e:
            raise ConfigError(f"{path}: not a readable safetensors file: {_first_line(e)}") from e
    return _state_dict_of(_torch_load(path, map_location), path)


def _load_weights(model, state_dict: dict, path: Path, what: str) -> None:
    """`load_state_dict(strict=True)`, with a mismatch reported as one line of key and shape differences."""
    try:
        model.load_state_dict(state_dict)
        return
    except RuntimeError:
        pass
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} in file vs {tuple(v.shape)} in model"
        for k, v in own.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]

    def part(label: str, items: list[str]) -> str:
        more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
        return f"{len(items)} {label}: {', '.join(items[:3])}{more}" if items else ""

    found = [part("missing", missing), part("unexpected", unexpected), part("shape mismatches", shapes)]
    raise ConfigError(f"{path}: weights do not fit {what}: " + "; ".join(p for p in found if p))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ExportedProgramModule(nn.Module):
    """Runs an ExportedProgram's module; train/eval only set the flag (its ops were fixed at export)."""

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.program = graph

    def train(self, mode: bool = True):
        # The unlifted graph module raises on train()/eval(), so do not recurse into it.
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x)


def _import_factory(spec: str):
    module_name, _, attr = spec.partition(":")
    if not _FACTORY.match(spec):
        raise ConfigError(f"{spec}: a factory must be written 'package.module:callable'")
    try:
        obj = importlib.import_module(module_name)
    except Exception as e:
        raise ConfigError(f"{spec}: cannot import module {module_name!r}: {_first_line(e)}") from e
    for name in attr.split("."):
        if not hasattr(obj, name):
            raise ConfigError(f"{spec}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, name)
    if not callable(obj):
        raise ConfigError(f"{spec}: {attr!r} is not callable")
    return obj


def _import_library(name: str, where: str):
    try:
        return importlib.import_module("timm" if name == "timm" else "torchvision.models")
    except Exception as e:  # CUDA-only wheels fail with OSError/RuntimeError as well as ImportError
        raise ConfigError(
            f"{where}: the {name} library failed to import ({type(e).__name__}: {_first_line(e)}); "
            "install a build that imports here or use another teacher source"
        ) from e


def _build(src: TeacherSource, kind: str, input_shape, num_classes: int, map_location):
    """The module for `kind` (not yet checked) and the description fields only this kind has."""
    c, h = input_shape[0], input_shape[1]
    path = src.path
    if kind == "checkpoint":
        ckpt = _torch_load(path, map_location)
        try:
            spec = ModelSpec.from_dict(ckpt["spec"])
        except Exception as e:
            raise ConfigError(f"{path}: checkpoint 'spec' is malformed: {_first_line(e)}") from e
        if tuple(spec.input_shape) != tuple(input_shape):
            raise ConfigError(
                f"{path}: checkpoint expects inputs {tuple(spec.input_shape)}, not {tuple(input_shape)}"
            )
        try:
            model = create_model(spec)
        except ValueError as e:
            raise ConfigError(f"{path}: {_first_line(e)}") from e
        _load_weights(model, _state_dict_of(ckpt, path), path, spec.arch)
        return model, {
            "arch": spec.arch,
            "kwargs": spec.kwargs,
            "spec": spec.to_dict(),
            "info": ckpt.get("info"),
        }
    if kind == "state_dict":
        if src.arch not in MODELS:
            raise ConfigError(f"{path}: unknown arch {src.arch!r}; known: {', '.join(MODELS.names())}")
        model = MODELS.create(
            src.arch, **dict(dict(in_chans=c, num_classes=num_classes, input_size=h), **src.kwargs)
        )
        _load_weights(model, _read_weights(path, map_location), path, src.arch)
        return model, {"arch": src.arch, "kwargs": src.kwargs}
    if kind == "torchscript":
        try:
            with warnings.catch_warnings():
                # torch.jit is deprecated upstream, but a user's TorchScript file is a valid teacher.
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.load(str(path), map_location=map_location), {}
        except Exception as e:
            raise ConfigError(f"{path}: not a loadable TorchScript file: {_first_line(e)}") from e
    if kind == "exported_program":
        try:  # map_location does not apply: torch.export.load restores tensors where they were saved
            return ExportedProgramModule(torch.export.load(str(path)).module()), {}
        except Exception as e:
            raise ConfigError(f"{path}: not a loadable torch.export program: {_first_line(e)}") from e
    if kind == "factory":
        fn = _import_factory(src.factory)
        try:
            model = fn(**src.kwargs)
        except Exception as e:
            raise ConfigError(f"{src.factory}: calling it failed: {_first_line(e)}") from e
        if path is not None and isinstance(model, nn.Module):
            _load_weights(model, _read_weights(path, map_location), path, src.factory)
        return model, {"factory": src.factory, "kwargs": src.kwargs}
    where = src.label()
    lib = _import_library(kind, where)
    try:
        if kind == "timm":
            model = lib.create_model(
                src.arch, pretrained=False, num_classes=num_classes, in_chans=c, **src.kwargs
            )
        else:
            model = lib.get_model(src.arch, weights=None, num_classes=num_classes, **src.kwargs)
    except Exception as e:
        raise ConfigError(f"{where}: cannot build the model: {_first_line(e)}") from e
    _load_weights(model, _read_weights(path, map_location), path, where)
    return model, {"arch": src.arch, "kwargs": src.kwargs}


def detect_kind(path: str | os.PathLike, map_location="cpu") -> str:
    """The teacher kind of a file: checkpoint, state_dict, torchscript or exported_program."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: teacher file not found")
    container = _container(path)
    if container in ("torchscript", "exported_program"):
        return container
    if container == "safetensors":
        return "state_dict"
    obj = _torch_load(path, map_location)
    if isinstance(obj, dict) and "spec" in obj and "state_dict" in obj:
        return "checkpoint"
    _state_dict_of(obj, path)  # raises when it is not weights either
    return "state_dict"


def _check_output(model, where: str, input_shape, num_classes: int) -> None:
    x = torch.zeros(1, *input_shape)
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as e:
        raise ConfigError(
            f"{where}: forward on a zeros input of shape {tuple(x.shape)} failed: {_first_line(e)}"
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
    kind = src.kind
    if kind in _FILE_KINDS or kind == "auto":
        found = detect_kind(src.path, map_location)
        if kind == "auto":
            kind = found
            if kind == "state_dict" and not src.arch:
                raise ConfigError(f"{src.path}: a plain state dict; name its architecture (arch) to build it")
            if kind != "state_dict" and (src.arch or src.kwargs):
                raise ConfigError(f"{src.path}: arch and kwargs do not apply to a {kind} file")
        elif found != kind and not (kind == "state_dict" and found == "checkpoint"):
            raise ConfigError(f"{src.path}: teacher kind {kind!r} given, but the file is a {found} file")
    model, extra = _build(src, kind, tuple(input_shape), num_classes, map_location)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{where}: built a {type(model).__name__}, not a torch nn.Module")
    model.eval()
    _check_output(model, where, input_shape, num_classes)
    description = {
        "kind": kind,
        "path": str(src.path) if src.path else None,
        "sha256": _sha256(src.path) if src.path else None,
        **extra,
        "params": sum(p.numel() for p in model.parameters()),
        # TorchScript and torch.export graphs do not run forward hooks on named submodules: logit KD only.
        "feature_taps": kind not in ("torchscript", "exported_program"),
    }
    return model, description
