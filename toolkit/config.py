"""The run config: pydantic models (unknown keys rejected), loaded from YAML or the built-in default."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from toolkit.errors import ConfigError

__all__ = ["RunConfig", "load_config", "save_config", "DEFAULT_CONFIG"]

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "default.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    root: Path = Path("/usr/share/datasets/fashion-mnist")
    val_size: int = Field(5000, ge=1)
    limit_train: int | None = Field(None, ge=1)
    limit_test: int | None = Field(None, ge=1)


class TrainConfig(_Strict):
    arch: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)


class DistillConfig(_Strict):
    temperature: float = Field(2.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1)
    scratch_control: bool = True


class ExportConfig(_Strict):
    # "torch" saves a .pt2 ExportedProgram: the teacher's own framework, benchmarked where torch exists.
    formats: list[Literal["onnx", "tflite", "torch"]] = Field(
        default_factory=lambda: ["onnx", "tflite", "torch"]
    )
    int8: bool = True
    calibration_samples: int = Field(256, ge=1)
    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    opset: int = Field(18, ge=13)


class BenchSettings(_Strict):
    threads: list[int] = Field(default_factory=lambda: [1], min_length=1)
    batch_size: int = Field(1, ge=1)
    warmup: int = Field(20, ge=0)
    min_runs: int = Field(200, ge=1)
    min_time_s: float = Field(1.0, ge=0)
    accuracy: bool = True


class RunConfig(_Strict):
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TrainConfig = Field(default_factory=lambda: TrainConfig(arch="cnn_teacher", epochs=2, lr=2e-3))
    student: TrainConfig = Field(default_factory=lambda: TrainConfig(arch="cnn_student", epochs=6, lr=5e-3))
    distill: DistillConfig = Field(default_factory=DistillConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    bench: BenchSettings = Field(default_factory=BenchSettings)


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{where}: {err['msg']}{more}"


def load_config(path: str | Path | None = None) -> RunConfig:
    """Read and validate a YAML config; `None` gives the built-in default."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{path}: {_first_error(e)}") from e


def save_config(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
