"""The PC side of boards: where they are (`targets`), what they install (`wheelhouse`), and one driver module
per target kind, registered by URL scheme (`ssh` today; an adb or serial kind would be one more module)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.registry import Registry

__all__ = ["TargetKind", "register_target_kind", "target_kind", "TARGET_KINDS"]


@dataclass(frozen=True)
class TargetKind:
    """How edgekd reaches one kind of board: `run(boards, path, results, **options)` measures `path` on every
    board of this kind at once and returns one `BoardRun` each (see `toolkit.fleet.ssh.run_boards`)."""

    scheme: str  # the URL scheme of `--target`, and a board's `kind:` in a targets file
    run: Callable[..., list[Any]]
    # `profile(boards, bundle, out, **options)`: `edgekd profile` on each, profiles.json back (None: none)
    profile: Callable[..., list[Any]] | None = None


def _builtins() -> None:
    importlib.import_module("toolkit.fleet.ssh")


TARGET_KINDS = Registry("target kind", group="edgekd.targets", builtins=_builtins)


def register_target_kind(kind: TargetKind) -> TargetKind:
    """Register a target kind (the one line each driver module runs)."""
    return TARGET_KINDS.register(kind, name=kind.scheme)


def target_kind(scheme: str) -> TargetKind:
    return TARGET_KINDS.get(scheme)
