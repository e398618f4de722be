"""The root of edgekd's own error types, and `first_line`: a board install reports bad input without toolkit.

The CLI prints an `EdgekdError` as one line; any other exception is a bug in edgekd and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["EdgekdError", "InputError", "first_line"]


class EdgekdError(Exception):
    """Base of every error edgekd reports to users as `error: <message>`."""


class InputError(EdgekdError, ValueError):
    """A file, option or value the user gave is invalid ("path: what is wrong")."""


def first_line(exc: BaseException, *, limit: int | None = None) -> str:
    """The first non-blank line of `exc`'s message (its type name when it has none), cut to `limit`."""
    line = next((s.strip() for s in str(exc).splitlines() if s.strip()), type(exc).__name__)
    return line if limit is None else line[:limit]
