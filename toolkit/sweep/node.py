"""One machine shared by trials: work (training, export) runs side by side, a benchmark runs alone.

A readers-writer lock on files in the node's temporary folder (flock, so it holds across processes and is
released when a process dies): work takes it shared, a benchmark exclusive. A gate in front of it keeps
a waiting benchmark from starving: while it waits, new work queues behind it.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["Phase", "node_phase", "overlaps"]

GATE = "edgekd-node.gate"
LOCK = "edgekd-node.lock"


@dataclass(frozen=True)
class Phase:
    """When one stage of one trial ran, and where: its wall-clock interval on the node."""

    name: str  # distill, export or bench
    node: str  # the host name
    start: float  # time.time() once the node's lock was held
    end: float


def lock_dir() -> Path:
    """Where this node's lock files live: EDGEKD_NODE_LOCK_DIR, else /tmp (not $TMPDIR, which batch
    schedulers set per job: two jobs on one node would lock different files)."""
    return Path(os.environ.get("EDGEKD_NODE_LOCK_DIR") or "/tmp")


def _open_shared(path: Path) -> int:
    """A descriptor on `path`, created writable for every user (another user's sweep locks it too)."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        os.fchmod(fd, 0o666)  # past the umask; only the creator may, and only the creator needs to
    except PermissionError:
        pass
    return fd


@contextmanager
def node_phase(name: str, kind: Literal["work", "bench"], phases: list[Phase]) -> Iterator[None]:
    """Run the body holding this node's lock (shared for work, exclusive for a benchmark); its interval
    is appended to `phases`."""
    folder = lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    gate, lock = _open_shared(folder / GATE), _open_shared(folder / LOCK)
    try:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_SH if kind == "work" else fcntl.LOCK_EX)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        start = time.time()
        try:
            yield
        finally:
            phases.append(Phase(name, socket.gethostname(), start, time.time()))
    finally:
        os.close(lock)  # closing releases the flock
        os.close(gate)


def overlaps(phases: list[tuple[str, Phase]]) -> list[tuple[str, str]]:
    """Pairs of (trial/phase) labels where a benchmark ran at the same time as anything else on its node."""
    out = []
    for i, (a, p) in enumerate(phases):
        for b, q in phases[i + 1 :]:
            if "bench" in (p.name, q.name) and p.node == q.node and p.start < q.end and q.start < p.end:
                out.append((f"{a}/{p.name}", f"{b}/{q.name}"))
    return out
