"""`edgekd profile`: per-operator profiles of a bundle's files, written as profiles.json and profile.md."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from toolkit.rundir import RunDir

__all__ = ["run_profile", "run_remote_profile"]


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
    from benchmarks.files import write_text_atomic
    from benchmarks.profile import write_profiles
    from benchmarks.profile_suite import profile_bundle
    from toolkit.report.time_breakdown import profile_markdown

    bundle = bundle.parent if bundle.name == "manifest.json" else bundle
    path = out / "profiles.json" if out else RunDir(bundle.parent).profiles
    data = profile_bundle(bundle, file=file, threads=threads, runs=runs, warmup=max(runs // 10, 5),
                          on_profile=on_profile)  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    write_profiles(path, data)
    markdown = profile_markdown(data)
    write_text_atomic(path.with_name("profile.md"), markdown)
    return path, markdown


def _board_markdown(path: Path, board: str) -> str:
    """A board's profiles.json, its target named after the board, and profile.md beside it."""
    from dataclasses import replace

    from benchmarks.files import write_text_atomic
    from benchmarks.profile import read_profiles, write_profiles
    from toolkit.report.time_breakdown import profile_markdown

    data = read_profiles(path)
    label = data.target.get("label") or data.target.get("kind", "native")
    data = replace(data, target={**data.target, "name": board, "label": f"{board}: {label}"})
    write_profiles(path, data)
    markdown = profile_markdown(data)
    write_text_atomic(path.with_name("profile.md"), markdown)
    return markdown


def run_remote_profile(
    bundle: Path, boards: list, *, out: Path | None, file: str | None, threads: int, runs: int, **remote
) -> list[tuple[object, str | None]]:
    """`edgekd profile --target/--targets`: each board profiles the bundle; (BoardRun, its markdown)."""
    from toolkit.fleet.boards import profile_on_boards

    bundle = bundle.parent if bundle.name == "manifest.json" else bundle
    out = out or RunDir(bundle.parent).profiles.parent
    args = [*(["--file", file] if file else []), "--threads", str(threads), "--runs", str(runs)]
    known = remote.pop("known_hosts", None) or Path.home() / ".ssh" / "known_hosts"
    done = profile_on_boards(boards, bundle, out, args=args, known_hosts=known, **remote)
    return [(r, None if r.error else _board_markdown(out / r.board.name / "profiles.json", r.board.name))
            for r in done]  # fmt: skip
