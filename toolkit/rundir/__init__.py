"""A run directory: where each stage of a run reads and writes its files (`RunDir`), and their formats."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import RunDirError

__all__ = ["RunDir", "MODEL_NAMES"]

MODEL_NAMES = ("teacher", "student_kd", "student_scratch")


@dataclass(frozen=True)
class RunDir:
    """`config.yaml`, `distill/` (checkpoints), `bundle/` (model files + manifest), `bench/`, `report/`."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def distill(self) -> Path:
        return self.root / "distill"

    @property
    def bundle(self) -> Path:
        return self.root / "bundle"

    @property
    def manifest(self) -> Path:
        return self.bundle / "manifest.json"

    @property
    def results(self) -> Path:
        return self.root / "bench" / "results.jsonl"

    @property
    def summary(self) -> Path:
        return self.distill / "summary.json"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def profiles(self) -> Path:
        return self.root / "profile" / "profiles.json"

    def all_profiles(self) -> list[Path]:
        """This machine's profiles.json, then each board's (`profile/<board>/profiles.json`)."""
        found = [self.profiles] if self.profiles.is_file() else []
        return found + sorted(self.profiles.parent.glob("*/profiles.json"))

    def checkpoint(self, name: str) -> Path:
        return self.distill / f"{name}.pt"

    def train_state(self, name: str) -> Path:
        """The optimizer and epoch state a cut-off training resumes from."""
        return self.distill / f"{name}.train.pt"

    def metrics(self, name: str) -> Path:
        """A model's per-epoch metrics (JSON lines; a `.csv` copy beside it)."""
        return self.distill / f"{name}_metrics.jsonl"

    def teacher_logits(self, name: str) -> Path:
        """A teacher's cached logits on the training rows."""
        return self.distill / f"{name}_logits.npz"

    def teacher_views(self, name: str) -> Path:
        """A teacher's cached soft targets on the run's stored views."""
        return self.distill / f"{name}_views.npz"

    def teacher_files(self, name: str = "teacher") -> tuple[Path, ...]:
        """What a sweep trial shares from the teacher's run: the checkpoint, then its target caches."""
        return self.checkpoint(name), self.teacher_logits(name), self.teacher_views(name)

    def require(self, path: Path, stage: str) -> Path:
        """Return `path` or raise naming the stage that writes it."""
        if not path.exists():
            raise RunDirError(f"{path}: not found; run `edgekd {stage}` on {self.root} first")
        return path
