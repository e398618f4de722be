"""`distill/summary.json`: what the distill stage trained, reused or loaded, and how each model scored.

The one typed definition its writer (the distill stage) and readers (CLI, report) go through; torch-free.
Model entries sit at the top level under their names (teacher, teacher_2, student_kd, student_kd_seed1, ...).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from benchmarks.files import write_text_atomic
from toolkit.errors import InputError

__all__ = [
    "SUMMARY_VERSION",
    "DistillSummary",
    "DataSizes",
    "EmbeddingsFile",
    "ModelSummary",
    "KdVsScratch",
    "SeedResult",
    "read_summary",
    "write_summary",
]

SUMMARY_VERSION = 1  # summaries written before the field existed read as version 1
_FIXED = ("schema_version", "data", "device", "world_size", "kd_vs_scratch", "warnings")  # other keys: models


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSizes(_Strict):
    kind: str = "idx"
    root: str
    train: int = Field(ge=0)
    val: int = Field(ge=0)
    test: int = Field(ge=0)
    classes: list[str] | None = None
    # Under a label budget: the training rows that kept their label (`train` counts them too), the rows
    # whose labels were dropped (the unlabeled pool), the rule, and a hash of the kept rows' indices.
    labeled: int | None = Field(None, ge=0)
    unlabeled: int | None = Field(None, ge=0)
    label_budget: str | None = None
    labeled_rows_sha256: str | None = None


class EmbeddingsFile(_Strict):
    path: str
    seconds: float | None = None


class ModelSummary(_Strict):
    """One trained, reused or loaded model: what it is, how it was trained, how it scored."""

    arch: str
    params: int = Field(ge=0)
    test_accuracy: float = Field(ge=0, le=1)
    val_accuracy: float | None = Field(None, ge=0, le=1)
    test: dict[str, Any] = Field(default_factory=dict)  # top1, top5, per_class, ece
    macs: int | None = None
    epochs: int | None = None
    seed: int | None = None
    train_seconds: float | None = None
    epoch_seconds: list[float] | None = None
    kept_epoch: int | None = None  # keep_best: the epoch (from 1) whose weights were kept
    device: str | None = None
    world_size: int | None = None
    methods: list[str] | None = None
    teacher_targets: str | None = None
    temperature: float | None = None
    alpha: float | None = None
    augment: bool | None = None
    views: dict[str, Any] | None = None  # stored augmented views replayed (toolkit/distill/views.py)
    view_logits_seconds: float | None = None  # teachers: computing their logits on every stored view
    soft_target_bytes_per_image: int | None = None  # teachers: stored soft targets, all views of an image
    weight: float | None = None  # teachers: ensemble weight
    reused: bool | None = None  # teachers: an earlier run's checkpoint with the same settings
    loaded: bool | None = None  # teachers: from a source file, not trained
    source: dict[str, Any] | None = None
    source_sha256: str | None = None
    # frozen-encoder teachers: per split, the cached sentence embeddings' file and the seconds computing
    # them took (None: read from the cache)
    embeddings: dict[str, EmbeddingsFile] | None = None
    # Under a label budget: the labeled and unlabeled training images this model trained on.
    labeled_images: int | None = Field(None, ge=0)
    unlabeled_images: int | None = Field(None, ge=0)


class SeedResult(_Strict):
    seed: int
    student_kd: float
    student_scratch: float


class KdVsScratch(_Strict):
    per_seed: list[SeedResult]
    mean_kd: float
    mean_scratch: float
    delta_points: float
    kd_wins: int


class DistillSummary(_Strict):
    schema_version: Literal[1] = SUMMARY_VERSION
    data: DataSizes
    device: str
    world_size: int = 1
    models: dict[str, ModelSummary]
    kd_vs_scratch: KdVsScratch | None = None
    # Validation-split findings a user must see before shipping: a teacher no better than training from
    # scratch, a KD student below the scratch control.
    warnings: list[str] = Field(default_factory=list)

    @classmethod
    def from_json_dict(cls, data: Any) -> DistillSummary:
        """From the file's flat layout (models at the top level)."""
        if not isinstance(data, dict):
            raise InputError(f"expected a JSON object, got {type(data).__name__}")
        fixed = {k: data[k] for k in _FIXED if k in data}
        return cls.model_validate({**fixed, "models": {k: v for k, v in data.items() if k not in _FIXED}})

    def to_json_dict(self) -> dict[str, Any]:
        """The file's flat layout, with exactly the keys the writer gave (older files round-trip)."""
        out = self.model_dump(mode="json", exclude_unset=True)
        models = out.pop("models")
        tail = {k: out.pop(k) for k in ("kd_vs_scratch", "warnings") if k in out}
        return {**out, **models, **tail}


def _where(err: ValidationError) -> str:
    first = err.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc'] if p != 'models')}: {first['msg']}"


def write_summary(path: Path, summary: DistillSummary) -> None:
    """Write `summary` atomically, in the file's flat layout."""
    write_text_atomic(path, json.dumps(summary.to_json_dict(), indent=2))


def read_summary(path: Path) -> DistillSummary:
    """Read and validate; a `ValueError` naming the file and the field otherwise."""
    try:
        return DistillSummary.from_json_dict(json.loads(path.read_text(encoding="utf-8")))
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: invalid JSON ({e})") from None
    except ValidationError as e:
        raise InputError(f"{path}: {_where(e)}") from None
