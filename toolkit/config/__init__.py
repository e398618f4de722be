"""The run config: pydantic models (unknown keys rejected), one module per section, loaded from YAML or the
built-in default."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from benchmarks.files import write_text_atomic
from benchmarks.protocol import DEFAULT_PROTOCOL
from toolkit.config.data import DataConfig
from toolkit.config.distill import DistillConfig, ViewsConfig
from toolkit.config.export import TEXT_EXPORT_DEFAULTS, ExportConfig, QatConfig
from toolkit.config.fields import Strict, first_error, registered
from toolkit.config.models import SourceKind, TeacherConfig, TeacherSource, TrainConfig, library_kinds
from toolkit.data.kinds import FACTORY_SPEC
from toolkit.errors import ConfigError, InputError, first_line

__all__ = [
    "RunConfig",
    "DataConfig",
    "TrainConfig",
    "TeacherConfig",
    "TeacherSource",
    "SourceKind",
    "DistillConfig",
    "ViewsConfig",
    "ExportConfig",
    "QatConfig",
    "BenchSettings",
    "TEXT_EXPORT_DEFAULTS",
    "FACTORY_SPEC",
    "library_kinds",
    "registered",
    "first_error",
    "yaml_problem",
    "load_config",
    "save_config",
    "DEFAULT_CONFIG",
]

DEFAULT_CONFIG = Path(__file__).parents[1] / "configs" / "default.yaml"


class BenchSettings(Strict):
    threads: list[int] = Field(default_factory=lambda: [1], min_length=1)
    batch_size: int = Field(1, ge=1)
    warmup: int = Field(DEFAULT_PROTOCOL.warmup, ge=0)
    min_runs: int = Field(DEFAULT_PROTOCOL.min_runs, ge=1)
    min_time_s: float = Field(DEFAULT_PROTOCOL.min_time_s, ge=0)
    repeats: int = Field(DEFAULT_PROTOCOL.repeats, ge=1)  # rounds, each in a fresh worker process
    pin: bool = True  # each worker on cores of its own where the machine allows it
    accuracy: bool = True
    # `edgekd run` profiles every file after bench (RUN/profile, `edgekd profile`): the report's "Where the
    # time goes"; this many profiled runs per file (0: no profile).
    profile_runs: int = Field(200, ge=0)


class RunConfig(Strict):
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when torch sees a GPU
    amp: bool = True  # float16 autocast on CUDA; ignored on CPU
    data: DataConfig = Field(default_factory=DataConfig)
    # One teacher (`teacher:`) or several (`teachers:`, soft targets averaged by weight); kept as `teachers`.
    teacher: TeacherConfig | None = None
    teachers: list[TeacherConfig] = Field(default_factory=list)
    student: TrainConfig = Field(default_factory=lambda: TrainConfig(arch="cnn_student", epochs=7, lr=5e-3))
    distill: DistillConfig = Field(default_factory=DistillConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    bench: BenchSettings = Field(default_factory=BenchSettings)

    @model_validator(mode="after")
    def _one_teacher_list(self):
        if self.teacher is not None and self.teachers:
            raise InputError("give teacher (one) or teachers (several), not both")
        if not self.teachers:
            self.teachers = [self.teacher or TeacherConfig(arch="cnn_teacher", epochs=2, lr=2e-3)]
        self.teacher = None
        if self.distill.views is not None and self.student.augment:
            raise InputError("student.augment draws new views every batch, distill.views replays stored ones")
        if self.data.is_text:
            self._text_export()
        return self

    def _text_export(self) -> None:
        """Token-id models: defaults that export and load (ONNX/TFLite fp32, fp16, ONNX dynamic int8), and
        the image-only options refused."""
        e, text = self.export, "with text data (token ids)"
        unset = set(TEXT_EXPORT_DEFAULTS) - e.model_fields_set
        for name, value in TEXT_EXPORT_DEFAULTS.items():
            if name in unset:
                setattr(e, name, list(value) if isinstance(value, tuple) else value)
        if "torch" in e.formats:
            raise InputError(f"export.formats: torch (.pt2) is not offered {text}; use onnx and tflite")
        if e.tflite_layout != "NCHW":
            raise InputError(f"export.tflite_layout applies to images, not {text}")
        if self.distill.augment or any(t.augment for t in [self.student, *self.teachers]):
            raise InputError(f"augment shifts and flips images; {text} use distill.views (token masks)")
        if self.distill.views is not None and self.distill.views.erase:
            raise InputError(f"distill.views.erase erases image boxes; {text} use distill.views.mask")

    @property
    def student_seeds(self) -> list[int]:
        return self.distill.seeds or [self.seed]


def yaml_problem(e: yaml.YAMLError) -> str:
    """`line L, column C: problem` where PyYAML knows it (its first line is often only the context)."""
    problem, mark = getattr(e, "problem", None), getattr(e, "problem_mark", None)
    if problem is None or mark is None:
        return first_line(e)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def load_config(path: str | Path | None = None) -> RunConfig:
    """Read and validate a YAML config; `None` gives the built-in default."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a YAML text file (byte {e.start} is not UTF-8)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({yaml_problem(e)})") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{path}: {first_error(e)}") from e


def save_config(cfg: RunConfig, path: str | Path) -> None:
    # `teacher:` is folded into `teachers` on load, so only the list is written.
    data = cfg.model_dump(mode="json", exclude={"teacher"})
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))
