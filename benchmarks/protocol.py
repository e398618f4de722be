"""One benchmark run's configuration and the timing protocol's defaults, defined once for `edgekd run`,
`edgekd bench`, the suites, the harness and the worker."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.backends import backend_names
from benchmarks.errors import InputError
from benchmarks.stats import COVERED_ROUNDS

__all__ = ["TimingProtocol", "DEFAULT_PROTOCOL", "BenchConfig"]


@dataclass(frozen=True)
class TimingProtocol:
    """Untimed warm-up calls, then timed calls until both `min_runs` and `min_time_s` are reached; all of it
    `repeats` times, each round in a fresh worker process."""

    warmup: int = 20
    min_runs: int = 200
    min_time_s: float = 0.5
    max_runs: int = 100_000
    # Rounds: fresh worker processes per configuration, in shuffled order; enough for the rounds'
    # bootstrap interval to cover close to its 95 % (docs/guide/measurement.md: Rounds, intervals and
    # significance).
    repeats: int = COVERED_ROUNDS


DEFAULT_PROTOCOL = TimingProtocol()


def _default_target() -> dict[str, Any]:
    return {"name": "local-cpu", "kind": "native", "label": "native: this CPU"}


@dataclass
class BenchConfig:
    """One benchmark run: the file, the protocol, and metadata copied into the record."""

    model_path: str
    backend: str | None = None  # None: chosen by file suffix at run time
    threads: int = 1
    batch_size: int = 1
    warmup: int = DEFAULT_PROTOCOL.warmup
    min_runs: int = DEFAULT_PROTOCOL.min_runs
    min_time_s: float = DEFAULT_PROTOCOL.min_time_s
    max_runs: int = DEFAULT_PROTOCOL.max_runs
    model: str = ""  # empty: the file's stem
    role: str = "unknown"
    format: str = ""  # empty: the file's suffix
    precision: str = "unknown"
    target: dict[str, Any] = field(default_factory=_default_target)
    data_path: str | None = None  # .npz with uint8 x (N, C, H, W) and int64 y
    preprocessing: dict[str, Any] | None = None  # {"scale", "mean", "std"}; float = (x*scale - mean)/std
    # The bundle's reference outputs for this file {"path", "key", "rows", "machine", "tolerance"}: the
    # accuracy pass compares its first rows' outputs with them (benchmarks/outputs.py).
    reference: dict[str, Any] | None = None
    # Passed to the backend's load() as keyword arguments (execution provider, XNNPACK, delegate, ...).
    backend_options: dict[str, Any] = field(default_factory=dict)
    streams: int = 1  # concurrent streams, each a thread with its own loaded model
    # Declared input shape (manifest or --shape); None dims are free. None: read from the model, noted.
    input_shape: list[int | None] | None = None
    # Copied into the record: which suite, repeat round and position in the shuffled order.
    suite: str | None = None
    round: int = 0
    order: int = 0
    schedule: dict[str, Any] = field(default_factory=dict)  # repeats, cooldown_s, seed: merged into protocol
    # Cores the worker is pinned to for steadier timings (None: unpinned); a constrained target pins
    # through target["cpus"] instead. The record's cpu_affinity says where it actually ran.
    cpus: list[int] | None = None

    def __post_init__(self) -> None:
        self.model_path = str(self.model_path)
        if self.data_path is not None:
            self.data_path = str(self.data_path)
        if self.backend is not None and self.backend not in backend_names():
            known = ", ".join(backend_names())
            raise InputError(f"unknown backend {self.backend!r}; known backends: {known}")
        for name in ("threads", "batch_size", "min_runs", "max_runs", "streams"):
            if getattr(self, name) < 1:
                raise InputError(f"BenchConfig.{name}: expected >= 1, got {getattr(self, name)}")
        if self.warmup < 0 or self.min_time_s < 0:
            raise InputError(
                f"BenchConfig: warmup and min_time_s must be >= 0, got {self.warmup}, {self.min_time_s}"
            )
        if self.max_runs < self.min_runs:
            raise InputError(f"BenchConfig: max_runs {self.max_runs} < min_runs {self.min_runs}")
        self.model = self.model or Path(self.model_path).stem
        self.format = self.format or Path(self.model_path).suffix.lstrip(".")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; `BenchConfig(**d)` restores it."""
        return asdict(self)
