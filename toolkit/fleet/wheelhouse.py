"""An offline wheelhouse for a board: edgekd's own wheel plus its `bench` extra, for the board's platform.

Built here with `pip download --platform ... --only-binary=:all:` (boards on a lab network often have no
internet), cached per (machine, Python, lock) and pushed to the board, which installs with `--no-index`.
The versions come from `locks/bench-<machine>-py<X.Y>.txt` (`make lock`, hash-checked), so a board gets
what the tests ran with; a board with no lock gets the newest versions pyproject's ranges allow.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

__all__ = [
    "bench_requirements",
    "board_lock",
    "platform_tags",
    "build_wheelhouse",
    "edgekd_version",
    "edgekd_build",
]

SOURCE = Path(__file__).resolve().parents[2]  # the source tree, when edgekd runs from one
LOCKS = SOURCE / "locks"


def bench_requirements() -> list[str]:
    """The core and the `bench` extra as edgekd's metadata lists them: what `edgekd bench` needs."""
    out = []
    for req in metadata.requires("edgekd") or []:
        spec, _, marker = req.partition(";")
        if not marker.strip() or marker.replace("'", '"').split() == ["extra", "==", '"bench"']:
            out.append(spec.strip())
    return list(dict.fromkeys(out))


def board_lock(machine: str, python: str) -> Path | None:
    """`locks/bench-<machine>-py<X.Y>.txt` for this board, when `make lock` wrote one."""
    path = LOCKS / f"bench-{machine}-py{'.'.join(python.split('.')[:2])}.txt"
    return path if path.is_file() else None


def edgekd_version() -> str:
    return metadata.version("edgekd")


def edgekd_build() -> str:
    """`<version>-<12 hex>`: the version and a digest of edgekd's source files, so a board never keeps a
    venv or wheel built from other code under the same version number."""
    digest = hashlib.sha256()
    for pkg in ("toolkit", "export", "benchmarks", "locks"):  # a new lock means a new board venv
        for path in sorted((SOURCE / pkg).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                digest.update(path.relative_to(SOURCE).as_posix().encode() + b"\0" + path.read_bytes())
    return f"{edgekd_version()}-{digest.hexdigest()[:12]}"


def platform_tags(machine: str, glibc: str | None) -> list[str]:
    """pip `--platform` tags for a Linux board: manylinux from 2014 up to its glibc."""
    major, minor = (int(p) for p in (glibc or "2.17").split(".")[:2])
    tags = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 16, -1)] if major == 2 else []
    return [*tags, f"manylinux2014_{machine}", f"linux_{machine}"]


def _pip(args: list[str], where: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{where}: pip {args[0]} failed: {last[:200]}")


def _own_wheel(dest: Path) -> Path:
    """edgekd's wheel at this version, built from a copy of the source tree (nothing written into it)."""
    version, build = edgekd_version(), edgekd_build()
    marker = dest / ".edgekd-build"
    found = sorted(dest.glob(f"edgekd-{version}-*.whl"))
    if found and marker.is_file() and marker.read_text() == build:
        return found[0]
    for stale in dest.glob("edgekd-*.whl"):  # built from other source: never pushed to a board
        stale.unlink()
    if not (SOURCE / "pyproject.toml").is_file():
        raise RuntimeError(f"{SOURCE}: no edgekd source tree to build the board's wheel from")
    with tempfile.TemporaryDirectory(prefix="edgekd-src-") as tmp:
        src = Path(tmp)
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(SOURCE / name, src)
        for pkg in ("toolkit", "export", "benchmarks"):
            shutil.copytree(SOURCE / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
        _pip(["wheel", "-q", "--no-deps", "-w", str(dest), str(src)], str(SOURCE))
    marker.write_text(build)
    return next(dest.glob(f"edgekd-{version}-*.whl"))


def build_wheelhouse(cache: Path, *, machine: str, python: str, glibc: str | None) -> Path:
    """`cache/<machine>-py<python>-<lock>/` holding every wheel a board needs (downloaded once, reused)."""
    lock = board_lock(machine, python)
    spec = ["-r", str(lock)] if lock else bench_requirements()  # a lock's hashes are checked by pip
    key = hashlib.sha256(lock.read_bytes()).hexdigest()[:12] if lock else "ranges"
    dest = cache / f"{machine}-py{python}-{key}"
    done = dest / ".complete"
    dest.mkdir(parents=True, exist_ok=True)
    if not done.is_file():
        args = ["download", "-q", "--dest", str(dest), "--only-binary=:all:", "--python-version", python]
        for tag in platform_tags(machine, glibc):
            args += ["--platform", tag]
        _pip([*args, *spec], f"wheelhouse for {machine} Python {python}")
        done.write_text(lock.name if lock else "\n".join(spec))
    _own_wheel(dest)
    return dest
