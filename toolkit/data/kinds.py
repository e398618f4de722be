"""Data kinds: one reader per source kind (`data.kind` in a config), registered by name where it is written.

edgekd's own are registered in `toolkit.data.load` (idx, image_folder, npz, factory) and `toolkit.data.text`
(rotten_tomatoes, bbc_news, text_csv); a third party adds one through the `edgekd.data_kinds` entry point.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.registry import Registry

__all__ = ["DataKind", "DATA_KINDS", "FACTORY_SPEC", "register_data_kind", "data_kind", "text_kinds"]

# `package.module:callable` (attribute path may be dotted), for data and teacher factories.
FACTORY_SPEC = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


@dataclass(frozen=True)
class DataKind:
    """A source kind: `read(data, seed)` returns the `DataSplits` a `DataConfig` of this kind describes.

    `options`: the pydantic model of the fields only this kind takes, written in `data:` next to the common
    ones and read as `data.options` (None: it takes none of its own).
    """

    name: str
    read: Callable[[Any, int], Any]
    text: bool = False  # token ids (N, L) rather than images
    options: type | None = None
    root: bool = True  # reads `data.root` (a folder or file): a config of this kind must give one
    default_root: Path | None = None  # where `root` is when the config does not say


def _builtins() -> None:
    for module in ("toolkit.data.load", "toolkit.data.text"):
        importlib.import_module(module)


DATA_KINDS = Registry("data kind", group="edgekd.data_kinds", builtins=_builtins)


def register_data_kind(kind: DataKind) -> DataKind:
    """Register a data kind (the one line each reader module runs per kind)."""
    return DATA_KINDS.register(kind, name=kind.name)


def data_kind(name: str) -> DataKind:
    return DATA_KINDS.get(name)


def text_kinds() -> tuple[str, ...]:
    """The kinds whose examples are token ids."""
    return tuple(n for n in DATA_KINDS.names() if DATA_KINDS.get(n).text)
