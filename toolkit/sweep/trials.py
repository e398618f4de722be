"""One sweep trial: the pipeline on its own run directory, the teacher shared; `trials.jsonl` records it."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from benchmarks.files import atomic_path
from benchmarks.records import drop_torn_tail
from toolkit.config import RunConfig, save_config
from toolkit.errors import InputError
from toolkit.pipeline.run import RunHooks
from toolkit.rundir import RunDir
from toolkit.sweep.node import Phase, node_phase
from toolkit.sweep.space import Point

__all__ = ["TrialResult", "read_trials", "append_trial", "prepare_teacher", "run_trial"]

# Files of the shared teacher a trial links instead of recomputing (the logits caches are keyed, so a
# trial whose teacher or data differed would recompute them rather than read wrong ones).


@dataclass
class TrialResult:
    """A finished trial (one line of trials.jsonl): its point of the space and its fastest KD student file."""

    trial: str  # t000, t001, ... in the order trials finished
    key: str  # params_key(params): the same point is never run twice
    params: Point
    run_dir: str  # relative to the sweep directory
    file: str  # the KD student file the objectives come from (the fastest one the trial measured)
    accuracy: float
    p50_ms: float
    size_bytes: int
    teacher_accuracy: float
    teacher_p50_ms: float  # the teacher fp32 file of the same format and backend, measured in the trial
    seconds: float  # wall time of the trial, waits for the node lock included
    # when each stage ran, on which node (a benchmark never overlaps other work there; older records: [])
    phases: list[Phase] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> TrialResult:
        """A record as `append_trial` wrote it (`phases` may be missing: older records)."""
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        if not required <= set(data) <= names:
            wrong = sorted((required - set(data)) | (set(data) - names))
            raise InputError(f"{where}: not a trial record (keys {wrong} missing or unknown)")
        phases = [Phase(**p) for p in data.get("phases", [])]
        return cls(**{**data, "phases": phases})

    @property
    def objectives(self) -> tuple[float, float, float]:
        """(accuracy, p50 ms, size bytes): maximized, minimized, minimized."""
        return (self.accuracy, self.p50_ms, float(self.size_bytes))


def read_trials(path: Path) -> list[TrialResult]:
    """The finished trials in `path` (a torn last line, from a killed sweep, is cut off first)."""
    if not path.is_file():
        return []
    drop_torn_tail(path)
    lines = path.read_text().splitlines()
    return [TrialResult.from_dict(json.loads(line), f"{path}:{n}") for n, line in enumerate(lines, 1)]


def append_trial(path: Path, result: TrialResult) -> None:
    """Append one trial as a whole line, on disk before returning."""
    with open(path, "a") as f:
        f.write(json.dumps(asdict(result), sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def prepare_teacher(cfg: RunConfig, out: Path) -> RunDir:
    """Train (or reuse) the sweep's one teacher in `out/teacher`; every trial links its files."""
    from toolkit.pipeline.distill_stage import run_distill

    run = RunDir(out / "teacher")
    run.root.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run.config)
    with node_phase("teacher", "work", []):
        run_distill(cfg, run, teachers_only=True)
    return run


def _link(src: Path, dst: Path) -> None:
    """`dst` becomes `src` in one rename: trials running at once may link the same file."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        try:
            os.link(src, tmp)
        except OSError:  # another file system
            shutil.copy2(src, tmp)


def _share(src: RunDir, dst: RunDir, *, caches_only: bool = False) -> None:
    """Link `src`'s teacher files (`RunDir.teacher_files`) into `dst`; with `caches_only`, only the target
    caches `dst` lacks (sharing back what the first trial computed)."""
    for path, target in zip(src.teacher_files(), dst.teacher_files(), strict=True):
        if caches_only and (path == src.checkpoint("teacher") or target.exists()):
            continue
        if path.is_file():
            _link(path, target)


def _objectives(run: RunDir) -> dict[str, Any]:
    """The fastest KD student row of the trial's report rows, and its teacher baseline."""
    from toolkit.report.run import load_run

    rows = load_run(run.root).rows
    students = [r for r in rows if r.model == "student_kd" and r.accuracy is not None]
    if not students:
        raise RuntimeError(f"{run.root}: the trial measured no KD student file")
    best = min(students, key=lambda r: r.p50_ms)
    teacher = next(
        (r for r in rows if r.role == "teacher" and r.precision == "fp32" and r.format == best.format), None
    )
    if teacher is None or teacher.accuracy is None:
        raise RuntimeError(f"{run.root}: the trial measured no teacher fp32 {best.format} file")
    return {
        "file": f"student_kd {best.format} {best.precision}",
        "accuracy": best.accuracy,
        "p50_ms": best.p50_ms,
        "size_bytes": best.size_bytes or 0,
        "teacher_accuracy": teacher.accuracy,
        "teacher_p50_ms": teacher.p50_ms,
    }


def run_trial(
    cfg: RunConfig,
    out: Path,
    name: str,
    params: Point,
    key: str,
    teacher: RunDir,
    *,
    threads: int | None = None,
) -> TrialResult:
    """Distill, export and benchmark one trial in `out/trials/<name>-<key>`; its `TrialResult`. Training
    and export use `threads` torch threads (None: torch's default); the benchmark has the node alone."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        return _run_trial(cfg, out, name, params, key, teacher)
    finally:  # the process goes on (a local sweep's next teacher, the CLI's caller) with its own count
        torch.set_num_threads(before)


class _TrialStages(RunHooks):
    """A trial's stages each hold the node's lock (a benchmark holds it alone); distill shares the teacher."""

    def __init__(self, teacher: RunDir, run: RunDir, phases: list[Phase]) -> None:
        self.teacher, self.run, self.phases = teacher, run, phases

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if name == "distill":
            _share(self.teacher, self.run)
        with node_phase(name, "bench" if name == "bench" else "work", self.phases):
            yield
        if name == "distill":  # the first trial computed the teacher's logits: later trials read them
            _share(self.run, self.teacher, caches_only=True)


def _run_trial(cfg: RunConfig, out: Path, name: str, params: Point, key: str, teacher: RunDir) -> TrialResult:
    """The pipeline without profile and report, appending to the trial's results; its objectives."""
    from toolkit.pipeline.run import run_pipeline

    t0 = time.perf_counter()
    run = RunDir(out / "trials" / f"{name}-{key}")
    phases: list[Phase] = []
    stages = _TrialStages(teacher, run, phases)
    run_pipeline(cfg, run.root, rotate=False, profile=False, report=False, hooks=stages)
    return TrialResult(
        trial=name,
        key=key,
        params=params,
        run_dir=str(run.root.relative_to(out)),
        seconds=round(time.perf_counter() - t0, 1),
        phases=phases,
        **_objectives(run),
    )
