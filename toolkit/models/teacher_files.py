"""Reading a teacher's files: which torch container a file is, its weights, and fitting them to a model.

Every failure is one `ConfigError` line that names the file.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from toolkit.errors import ConfigError, first_line

__all__ = ["container", "load_weights", "read_weights", "sha256", "state_dict_of", "torch_load"]


def container(path: Path) -> str:
    """What holds the file: torchscript, exported_program, torch_save, safetensors or unknown."""
    # The marker entries inside torch's zip archives tell the three formats apart.
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


def torch_load(path: Path, map_location) -> Any:
    """`torch.load(weights_only=True)`, with the unpickler's reason for a refusal in one line."""
    if not zipfile.is_zipfile(path):
        with path.open("rb") as f:
            if f.read(1) != b"\x80":  # torch.save writes a zip archive, or (legacy) a protocol-2+ pickle
                raise ConfigError(f"{path}: not a torch file (neither a zip archive nor a pickle)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch wraps the reason in a long advice text; keep only the unpickler's own words.
        text = str(e)
        # torch words it "Unsupported global: GLOBAL x.y" or, for blocked modules (os, posix, builtins
        # ...), "unsupported GLOBAL x.y whose module x is blocked".
        if m := re.search(r"[Uu]nsupported (?:global: )?GLOBAL (\S+)", text):
            raise ConfigError(
                f"{path}: holds a pickled {m.group(1)}, which a weights-only load refuses; "
                "save its state_dict, TorchScript or a torch.export .pt2 instead"
            ) from e
        after = text.split("WeightsUnpickler error:", 1)[-1]
        detail = next((line.strip() for line in after.splitlines() if line.strip()), "")
        raise ConfigError(f"{path}: not a readable torch file: {detail or first_line(e)}") from e
    except Exception as e:
        raise ConfigError(f"{path}: not a readable torch file: {first_line(e)}") from e


def state_dict_of(obj: Any, path: Path) -> dict:
    """The mapping of parameter names to tensors in a loaded file (unwrapped from a checkpoint's key)."""
    # Common wrappers: edgekd checkpoints and training scripts keep the weights under one key.
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"{path}: not a state dict (expected a mapping of parameter names to tensors)")
    return obj


def read_weights(path: Path, map_location) -> dict:
    """The state dict in a torch or .safetensors weights file."""
    if not path.is_file():
        raise ConfigError(f"{path}: weights file not found")
    if container(path) == "safetensors":
        try:
            from safetensors.torch import load_file
        except Exception as e:
            raise ConfigError(
                f"{path}: reading .safetensors needs the safetensors package: {first_line(e)}"
            ) from e
        device = map_location if isinstance(map_location, str) else "cpu"
        try:
            return load_file(path, device=device)
        except Exception as e:
            raise ConfigError(f"{path}: not a readable safetensors file: {first_line(e)}") from e
    return state_dict_of(torch_load(path, map_location), path)


def load_weights(model, state_dict: dict, path: Path, what: str) -> None:
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


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
