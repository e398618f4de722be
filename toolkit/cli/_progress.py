"""Rich progress bars fed by the library's callbacks (the library itself never prints)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["console", "train_progress"]

# Piped to a log (as on a board), rich would squeeze tables to 80 columns; give them room instead.
_WIDTH = None if sys.stderr.isatty() or os.environ.get("COLUMNS") else 200
console = Console(stderr=True, soft_wrap=True, width=_WIDTH)  # log lines stay whole when piped


@contextlib.contextmanager
def train_progress() -> Iterator:
    """Yield an `on_step(name, done, total, metrics)` callback drawing one bar per trained model."""
    tasks: dict[str, int] = {}
    with Progress(
        TextColumn("[bold]{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epoch {task.fields[epoch]} loss {task.fields[loss]:.3f} acc {task.fields[acc]:.3f}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:

        def on_step(name: str, done: int, total: int, metrics: dict) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(
                    name, total=total, epoch=1, loss=float("nan"), acc=float("nan")
                )
            progress.update(
                tasks[name],
                completed=done,
                epoch=metrics["epoch"],
                loss=metrics["loss"],
                acc=metrics.get("accuracy", float("nan")),
            )

        yield on_step
