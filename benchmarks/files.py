"""Atomic writes: every output goes to a temporary name beside it and is renamed when whole.

A file under its final name is therefore complete; a killed process or a full disk leaves at most a
`.NAME.partial` file, which no reader looks at. Stdlib only (a board has it).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "write_text_atomic", "sha256_file", "user_cache"]


@contextlib.contextmanager
def atomic_path(dst: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `dst`; move it onto `dst` only if the block succeeds."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    _drop_orphans(dst)
    # One temporary name per process: ranks or processes writing the same file never share one.
    tmp = dst.with_name(f".{dst.stem}.{os.getpid()}.partial{dst.suffix}")
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"{dst}: the writer finished but wrote no file")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # on disk before the rename: a power cut keeps the old file
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def _drop_orphans(dst: Path) -> None:
    """Remove temporary files of `dst` left by processes that no longer run (killed mid-write)."""
    for tmp in dst.parent.glob(f".{dst.stem}.*.partial{dst.suffix}"):
        pid = tmp.name[len(dst.stem) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: running
    return True


def write_text_atomic(path: str | Path, text: str) -> Path:
    """`path.write_text(text)` (UTF-8), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def user_cache(name: str) -> Path:
    """`$XDG_CACHE_HOME/edgekd/NAME` (`~/.cache/edgekd/NAME` when unset): caches shared by every run here."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgekd" / name
