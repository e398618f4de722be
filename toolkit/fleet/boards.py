"""Measure a bundle on boards of any kind: the flags a board's `edgekd bench` gets, one run per kind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from toolkit.errors import InputError
from toolkit.fleet import target_kind
from toolkit.fleet.targets import Board

__all__ = ["board_args", "run_on_boards", "profile_on_boards", "WHEELHOUSE_CACHE"]

WHEELHOUSE_CACHE = Path.home() / ".cache" / "edgekd" / "wheelhouse"

# Suite fields -> `edgekd bench` flags, for the command a board runs.
_FLAGS = {"threads": "--threads", "batch_sizes": "--batch", "streams": "--streams", "min_runs": "--min-runs",
          "min_time_s": "--min-time", "repeats": "--repeats", "cooldown_s": "--cooldown", "seed": "--seed",
          "timeout_s": "--timeout"}  # fmt: skip


def board_args(suite: str | None, overrides: dict[str, Any], shape: str | None = None):
    """The flags of the suite each board runs: its own `suite:`, else `suite`, plus the overrides given."""
    flags = ["--shape", shape] if shape else []
    for key, value in overrides.items():
        if key in _FLAGS and value is not None:
            values = value if isinstance(value, list) else [value]
            flags += [x for v in values for x in (_FLAGS[key], str(v))]
    if overrides.get("pin") is not None:
        flags.append("--pin" if overrides["pin"] else "--no-pin")
    return lambda board: [*(["--suite", board.suite or suite] if board.suite or suite else []), *flags]


def _wheels(info: dict) -> Path:
    """The offline wheelhouse for a board's (machine, Python, glibc), built here once and cached."""
    from toolkit.fleet.wheelhouse import build_wheelhouse

    return build_wheelhouse(WHEELHOUSE_CACHE, **{k: info[k] for k in ("machine", "python", "glibc")})


def run_on_boards(
    boards: list[Board], path: Path, results: Path, *, args: Callable[[Board], list[str]], **options: Any
) -> list[Any]:
    """Measure `path` on every board, each kind through its registered driver; one `BoardRun` per board."""
    runs: dict[str, Any] = {}
    for scheme in dict.fromkeys(b.kind for b in boards):
        group = [b for b in boards if b.kind == scheme]
        done = target_kind(scheme).run(group, path, results, args=args, wheels=_wheels, **options)
        runs |= {board.name: run for board, run in zip(group, done, strict=True)}
    return [runs[b.name] for b in boards]


def profile_on_boards(
    boards: list[Board], bundle: Path, out: Path, *, args: list[str], **options: Any
) -> list[Any]:
    """`edgekd profile` of `bundle` on every board (`args`: its flags); profiles.json in `out/<board>/`."""
    runs: dict[str, Any] = {}
    for scheme in dict.fromkeys(b.kind for b in boards):
        group = [b for b in boards if b.kind == scheme]
        if (profile := target_kind(scheme).profile) is None:
            raise InputError(f"board {group[0].name!r}: target kind {scheme!r} cannot run `edgekd profile`")
        done = profile(group, bundle, out, args=lambda board: args, wheels=_wheels, **options)
        runs |= {board.name: run for board, run in zip(group, done, strict=True)}
    return [runs[b.name] for b in boards]
