"""How `edgekd` reports a failure: bad input as one `error:` line, anything else as a bug with a traceback."""

from __future__ import annotations

import sys

from rich.markup import escape

from toolkit.cli._progress import console

__all__ = ["error_line", "bug_note"]


def error_line(text: str) -> None:
    """`error: TEXT` on stderr, then exit 1."""
    # escaped and without emoji codes: a message is text (a path like `a[1]` or `d.npz:x:` stays as is)
    console.print(f"[red]error:[/red] {escape(text)}", highlight=False, soft_wrap=True, emoji=False)
    sys.exit(1)


def bug_note(exc: BaseException) -> None:
    """One line before the traceback: this is edgekd's fault, not the input's, and where to report it."""
    from importlib import metadata

    try:
        meta = metadata.metadata("edgekd")
        version = meta["Version"]
        urls = [u.split(",", 1)[-1].strip() for u in meta.get_all("Project-URL") or []]
    except metadata.PackageNotFoundError:
        version, urls = "(not installed)", []
    where = urls[-1] if urls else "the issue tracker of the repository you installed edgekd from"
    console.print(
        f"[red]bug:[/red] edgekd {version} failed with {type(exc).__name__}, which is a bug in edgekd, not a "
        f"problem with your input; please report it at {where} with the command and the traceback below.",
        highlight=False,
        soft_wrap=True,
        emoji=False,
        markup=True,
    )
