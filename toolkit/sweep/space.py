"""A sweep file: the base run config, settings fixed for every trial, and the space over dotted keys."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from toolkit.config import DEFAULT_CONFIG, RunConfig, first_error, yaml_problem
from toolkit.errors import ConfigError, InputError

__all__ = ["Point", "Range", "SweepConfig", "load_sweep", "grid", "sample", "trial_config", "params_key"]

Choice = list[Any]
# One point of the space, what one trial sets: dotted key -> a value from the sweep file (JSON, as
# trials.jsonl stores it under `params`).
Point = dict[str, JsonValue]


class Range(BaseModel):
    """A numeric interval: floats, or integers with `int: true`; `step` quantizes, `log` is log-uniform."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    low: float
    high: float
    step: float | None = Field(None, gt=0)
    log: bool = False
    integer: bool = Field(False, alias="int")

    @model_validator(mode="after")
    def _ordered(self):
        if self.high < self.low:
            raise InputError(f"high {self.high} is below low {self.low}")
        return self

    def values(self) -> list[float | int]:
        """Every value of a stepped or integer range (grid search)."""
        step = self.step or (1 if self.integer else None)
        if step is None:
            raise InputError("a float range without step has no grid; give step, or search random/optuna")
        n = int(round((self.high - self.low) / step)) + 1
        return [self._cast(self.low + i * step) for i in range(n)]

    def _cast(self, v: float) -> float | int:
        return int(round(v)) if self.integer else round(v, 10)


class SweepConfig(BaseModel):
    """The sweep file (`edgekd sweep SWEEP.yaml`)."""

    model_config = ConfigDict(extra="forbid")

    base: str = "default"  # a config file (relative to the sweep file) or a packaged config name
    search: Literal["grid", "random", "optuna"] = "grid"
    sampler: Literal["nsga2", "tpe"] = "nsga2"  # optuna's multi-objective samplers
    trials: int | None = Field(None, ge=1)  # random/optuna: how many; grid: at most this many
    seed: int = 0
    max_accuracy_drop: float = Field(1.0, ge=0)
    # Torch threads per trial's training and export, and the CPUs a trial asks Ray for (on Ray: 1 if
    # unset; locally unset means torch's default, every core). GPUs: what a trial asks Ray for.
    cpus_per_trial: int | None = Field(None, ge=1)
    gpus_per_trial: float = Field(0.0, ge=0)
    fixed: dict[str, Any] = Field(default_factory=dict)  # dotted key -> value, for every trial
    space: dict[str, Choice | Range] = Field(min_length=1)  # dotted key -> choices or a range

    @model_validator(mode="after")
    def _shared_teacher(self):
        for key in self.space:
            if key.split(".")[0] in ("teacher", "teachers", "data", "seed"):
                raise InputError(f"{key}: trials share one teacher and its data; sweep the student side")
        if self.search != "grid" and self.trials is None:
            raise InputError(f"search: {self.search} needs trials: N")
        return self


def _read_yaml(path: Path, what: str) -> dict:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as e:
        raise ConfigError(f"{path}: {what} not readable ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a YAML text file (byte {e.start} is not UTF-8)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({yaml_problem(e)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def load_sweep(path: Path) -> tuple[SweepConfig, RunConfig]:
    """The sweep file and its base run config with `fixed` applied, validated (`ConfigError` otherwise)."""
    try:
        sweep = SweepConfig.model_validate(_read_yaml(path, "sweep file"))
    except ValidationError as e:
        raise ConfigError(f"{path}: {first_error(e)}") from None
    base = Path(sweep.base) if Path(sweep.base).suffix else DEFAULT_CONFIG.parent / f"{sweep.base}.yaml"
    if not base.is_absolute() and (path.parent / base).is_file():
        base = path.parent / base  # a base beside the sweep file
    try:
        return sweep, RunConfig.model_validate(_apply(_read_yaml(base, "base config"), sweep.fixed))
    except ValidationError as e:
        raise ConfigError(f"{path}: base {base} with fixed: {first_error(e)}") from None


def _apply(raw: dict, values: Point) -> dict:
    """A copy of the config dict with each dotted key set (missing levels created)."""
    out = json.loads(json.dumps(raw))
    for key, value in values.items():
        node = out
        *head, last = key.split(".")
        for part in head:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def trial_config(cfg: RunConfig, params: Point) -> RunConfig:
    """The base config with one trial's values; `ConfigError` when they do not make a valid config."""
    try:
        return RunConfig.model_validate(_apply(cfg.model_dump(mode="json", exclude={"teacher"}), params))
    except ValidationError as e:
        raise ConfigError(f"trial {params}: {first_error(e)}") from None


def params_key(params: Point) -> str:
    """A short stable id of one point of the space (a finished trial with it is never re-run)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]


def grid(sweep: SweepConfig) -> list[Point]:
    """Every combination of the space's values, in file order (capped at `trials`)."""
    keys = list(sweep.space)
    axes = [v.values() if isinstance(v, Range) else v for v in sweep.space.values()]
    points = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*axes)]
    return points[: sweep.trials] if sweep.trials else points


def sample(sweep: SweepConfig, rng: random.Random) -> Point:
    """One point drawn uniformly (log-uniformly with `log`) from the space."""
    out: Point = {}
    for key, dom in sweep.space.items():
        if not isinstance(dom, Range):
            out[key] = rng.choice(dom)
        elif dom.step or dom.integer:
            out[key] = rng.choice(dom.values())
        elif dom.log:
            out[key] = round(dom.low * (dom.high / dom.low) ** rng.random(), 10)
        else:
            out[key] = round(rng.uniform(dom.low, dom.high), 10)
    return out
