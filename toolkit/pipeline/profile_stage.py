"""`edgekd profile`: per-operator profiles of a bundle's files, written as profiles.json and profile.md."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from toolkit.rundir import RunDir

__all__ = ["run_profile"]


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
