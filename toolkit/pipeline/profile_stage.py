"""`edgekd profile`: per-operator profiles of a bundle's files, written as profiles.json and profile.md."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from toolkit.rundir import RunDir

__all__ = ["run_profile", "run_remote_profile"]


def _folders(bundle: Path, out: Path | None) -> tuple[Path, Path]:
    """(the bundle folder, even when given its manifest.json; where profiles go: `out`, else RUN/profile)."""
    bundle = bundle.parent if bundle.name == "manifest.json" else bundle
    return bundle, out or RunDir(bundle.parent).profiles.parent


def _write(path: Path, data) -> str:
    """`data` as profiles.json at `path` and its tables as profile.md beside it; the tables."""
    from benchmarks.files import write_text_atomic
    from benchmarks.profile import write_profiles
    from toolkit.report.time_breakdown import profile_markdown

    write_profiles(path, data)
    markdown = profile_markdown(data)
    write_text_atomic(path.with_name("profile.md"), markdown)
    return markdown


def run_profile(
    bundle: Path,
    *,
    file: str | None = None,
    threads: int = 1,
    runs: int = 200,
    out: Path | None = None,
    on_profile: Callable = lambda p: None,
) -> tuple[Path, str]:
    """Profile the bundle's files here; write `out` (default: the run's profile/ folder beside the bundle)
    profiles.json and profile.md. Returns (profiles.json, the markdown)."""
    from benchmarks.profile_suite import profile_bundle

    bundle, folder = _folders(bundle, out)
    data = profile_bundle(bundle, file=file, threads=threads, runs=runs, warmup=max(runs // 10, 5),
                          on_profile=on_profile)  # fmt: skip
    path = folder / "profiles.json"
    return path, _write(path, data)


def run_remote_profile(
    bundle: Path, boards: list, *, out: Path | None, file: str | None, threads: int, runs: int, **remote
) -> list[tuple[object, str | None]]:
    """`edgekd profile --target/--targets`: each board profiles the bundle; (BoardRun, its markdown)."""
    from benchmarks.profile import read_profiles
    from toolkit.fleet.boards import profile_on_boards

    bundle, out = _folders(bundle, out)
    args = [*(["--file", file] if file else []), "--threads", str(threads), "--runs", str(runs)]
    known = remote.pop("known_hosts", None) or Path.home() / ".ssh" / "known_hosts"
    done = profile_on_boards(boards, bundle, out, args=args, known_hosts=known, **remote)
    paths = {r.board.name: out / r.board.name / "profiles.json" for r in done}
    return [(r, None if r.error else _write(paths[r.board.name], read_profiles(paths[r.board.name])))
            for r in done]  # fmt: skip
