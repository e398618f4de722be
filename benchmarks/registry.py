"""One `Registry` for every extension point: models, losses, backends, exporters, data kinds, targets."""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable
from importlib import metadata
from typing import Any

from benchmarks.errors import InputError

__all__ = ["Registry"]


class Registry:
    """Maps names to entries; `create(name, **kw)` builds one, unknown names list the known ones.

    With `group`, the modules named by that entry-point group (third parties' own) are imported on the
    first lookup, as pytest imports its plugins; each registers its entries when imported."""

    def __init__(self, kind: str, *, group: str | None = None, builtins: Callable[[], None] | None = None):
        self.kind = kind
        self.group = group
        self._builtins = builtins
        self._loaded = group is None and builtins is None
        self._entries: dict[str, Any] = {}

    def register(self, fn: Any = None, *, name: str | None = None):
        """Decorator: register `fn` under `name` (default: its `__name__`)."""

        def add(f: Any) -> Any:
            key = name or f.__name__
            if key in self._entries:
                raise InputError(f"{self.kind} {key!r} is already registered")
            self._entries[key] = f
            return f

        return add(fn) if fn is not None else add

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # first: a plugin that looks names up while it is imported sees the built-ins
        if self._builtins is not None:
            self._builtins()
        for entry in metadata.entry_points(group=self.group) if self.group else ():
            try:
                importlib.import_module(entry.value.split(":")[0])
            except Exception as e:  # a broken plugin names itself instead of breaking every command
                raise InputError(f"{self.kind} plugin {entry.name!r} ({entry.value}): {e}") from None
            if entry.name not in self._entries:  # the name a config was checked against must exist
                where = f"{self.kind} plugin {entry.name!r}"
                raise InputError(f"{where}: {entry.value} registers none by that name")

    def get(self, name: str) -> Any:
        self._load()
        if name not in self._entries:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise InputError(f"unknown {self.kind} {name!r}; known: {known}")
        return self._entries[name]

    def create(self, name: str, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)

    def names(self, pattern: str = "*") -> list[str]:
        self._load()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def values(self) -> list[Any]:
        self._load()
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries
