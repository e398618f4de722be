"""Which installed packages differ from a lock: `python scripts/lock_drift.py locks/dev.txt`.

Run by `make test-latest` in the venv of the newest versions pyproject's ranges allow, before `make lock`.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s\\;]+)", re.M)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def drift(lock: Path) -> list[tuple[str, str | None, str | None]]:
    """(package, locked version, installed version) for every package where the two differ."""
    locked = {_norm(n): v for n, v in PIN.findall(lock.read_text())}
    installed = {_norm(d.metadata["Name"]): d.version for d in metadata.distributions()}
    installed.pop("edgekd", None)
    names = sorted(set(locked) | set(installed))
    return [(n, locked.get(n), installed.get(n)) for n in names if locked.get(n) != installed.get(n)]


def main() -> None:
    lock = Path(sys.argv[1] if len(sys.argv) > 1 else "locks/dev.txt")
    rows = drift(lock)
    print(f"{len(rows)} package(s) differ from {lock}:" if rows else f"every package is at {lock}'s version")
    for name, locked, installed in rows:
        print(f"  {name:32} lock {locked or '-':>14}   installed {installed or '-':>14}")


if __name__ == "__main__":
    main()
