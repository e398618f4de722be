"""Measure one model file: load, cold run, warm-up, timed runs, accuracy and peak memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.backends import BACKENDS, backend_for, load_backend
from benchmarks.machine import machine_facts
from benchmarks.records import BenchRecord, LatencyStats

__all__ = ["BenchConfig", "BenchmarkError", "measure", "run_benchmark", "time_runs", "pin_cpus"]

_DEFAULT_PREPROCESSING = {"scale": 1 / 255, "mean": [0.0], "std": [1.0]}


class BenchmarkError(RuntimeError):
    """A file could not be benchmarked (the worker crashed, timed out or printed no result)."""


def _default_target() -> dict[str, Any]:
    return {"name": "local-cpu", "kind": "native", "label": "native: this CPU"}


@dataclass
class BenchConfig:
    """One benchmark run: the file, the protocol, and metadata copied into the record."""

    model_path: str
    backend: str | None = None  # None: chosen by file suffix at run time
    threads: int = 1
    batch_size: int = 1
    warmup: int = 10
    min_runs: int = 100
    min_time_s: float = 1.0
    max_runs: int = 100_000
    model: str = ""  # empty: the file's stem
    role: str = "unknown"
    format: str = ""  # empty: the file's suffix
    precision: str = "unknown"
    target: dict[str, Any] = field(default_factory=_default_target)
    data_path: str | None = None  # .npz with uint8 x (N, C, H, W) and int64 y
    preprocessing: dict[str, Any] | None = None  # {"scale", "mean", "std"}; float = (x*scale - mean)/std
    # Passed to the backend's load() as keyword arguments (execution provider, XNNPACK, delegate, ...).
    backend_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.model_path = str(self.model_path)
        if self.data_path is not None:
            self.data_path = str(self.data_path)
        if self.backend is not None and self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; known backends: {', '.join(BACKENDS)}")
        for name in ("threads", "batch_size", "min_runs", "max_runs"):
            if getattr(self, name) < 1:
                raise ValueError(f"BenchConfig.{name}: expected >= 1, got {getattr(self, name)}")
        if self.warmup < 0 or self.min_time_s < 0:
            raise ValueError(
                f"BenchConfig: warmup and min_time_s must be >= 0, got {self.warmup}, {self.min_time_s}"
            )
        if self.max_runs < self.min_runs:
            raise ValueError(f"BenchConfig: max_runs {self.max_runs} < min_runs {self.min_runs}")
        self.model = self.model or Path(self.model_path).stem
        self.format = self.format or Path(self.model_path).suffix.lstrip(".")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; `BenchConfig(**d)` restores it."""
        return asdict(self)


def time_runs(
    fn: Callable[[], object], *, warmup: int, min_runs: int, min_time_s: float, max_runs: int
) -> list[float]:
    """Call `fn` `warmup` times, then time calls until both `min_runs` and `min_time_s` are met (ms)."""
    for _ in range(warmup):
        fn()
    clock = time.perf_counter_ns
    limit_ns = int(min_time_s * 1e9)
    samples: list[int] = []
    total_ns = 0
    # Only the clock reads, the call and integer bookkeeping sit inside the loop: no logging.
    while len(samples) < max_runs and (len(samples) < min_runs or total_ns < limit_ns):
        start = clock()
        fn()
        elapsed = clock() - start
        samples.append(elapsed)
        total_ns += elapsed
    return [s / 1e6 for s in samples]


def _memory_mb() -> tuple[float | None, float | None]:
    """(peak, current) resident memory of this process in MiB."""
    try:
        with open("/proc/self/status") as f:
            values = {k: v for k, _, v in (line.partition(":") for line in f)}
        return int(values["VmHWM"].split()[0]) / 1024, int(values["VmRSS"].split()[0]) / 1024
    except (OSError, KeyError, ValueError, IndexError):
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # ru_maxrss is kB on Linux, bytes on macOS; there is no portable "current" value.
        peak_mb = peak / 2**20 if sys.platform == "darwin" else peak / 1024
        return peak_mb, peak_mb
    except (ImportError, OSError):
        return None, None


def pin_cpus(target: dict[str, Any]) -> None:
    """Restrict this process to `target["cpus"]` if given; call before the runtime starts threads."""
    cpus = target.get("cpus")
    if cpus:
        os.sched_setaffinity(0, {int(c) for c in cpus})


def _timing_input(shape: list[int | None], batch_size: int) -> np.ndarray:
    # Batch dim follows batch_size (the backend resizes or rejects); other dynamic dims become 1.
    dims = [batch_size] + [d if d is not None else 1 for d in shape[1:]]
    return np.random.default_rng(0).standard_normal(dims, dtype=np.float32)


def _accuracy(
    config: BenchConfig, run: Callable[[np.ndarray], np.ndarray], x_like: np.ndarray
) -> tuple[float, int]:
    """Top-1 accuracy over `config.data_path`, in batches shaped like `x_like` (last batch padded)."""
    path = config.data_path
    with np.load(path) as data:
        if "x" not in data or "y" not in data:
            raise ValueError(f"{path}: expected arrays 'x' and 'y', got {sorted(data.files)}")
        xs, ys = data["x"], data["y"]
    if xs.dtype != np.uint8 or xs.ndim != 4 or len(xs) != len(ys) or len(xs) == 0:
        raise ValueError(
            f"{path}: expected uint8 x (N, C, H, W) and y (N,), got x {xs.dtype} {xs.shape}, y {ys.shape}"
        )
    if xs.shape[1:] != x_like.shape[1:]:
        raise ValueError(
            f"{path}: examples have shape {list(xs.shape[1:])}, model {config.model_path} "
            f"expects {list(x_like.shape[1:])}"
        )
    pre = {**_DEFAULT_PREPROCESSING, **(config.preprocessing or {})}
    mean = np.asarray(pre["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(pre["std"], dtype=np.float32).reshape(1, -1, 1, 1)
    batch = x_like.shape[0]
    correct = 0
    for start in range(0, len(xs), batch):
        chunk = (xs[start : start + batch].astype(np.float32) * float(pre["scale"]) - mean) / std
        n = len(chunk)
        if n < batch:  # fixed-batch models need a full batch; padded rows are dropped below
            chunk = np.concatenate([chunk, np.zeros((batch - n, *chunk.shape[1:]), np.float32)])
        logits = np.asarray(run(chunk.astype(np.float32))).reshape(batch, -1)[:n]
        correct += int((logits.argmax(axis=1) == ys[start : start + n]).sum())
    return correct / len(xs), len(xs)


def measure(config: BenchConfig) -> dict[str, Any]:
    """Benchmark `config.model_path` in this process and return plain measurements."""
    name = config.backend or backend_for(config.model_path)
    backend = load_backend(name)
    _, baseline_mb = _memory_mb()

    start = time.perf_counter_ns()
    handle = backend.load(config.model_path, threads=config.threads, **config.backend_options)
    load_ms = (time.perf_counter_ns() - start) / 1e6
    _, shape, dtype = backend.input_spec(handle)
    x = _timing_input(shape, config.batch_size)

    start = time.perf_counter_ns()
    try:
        backend.run(handle, x)
    except ValueError:
        raise  # backends name the file in their own ValueErrors
    except Exception as exc:
        raise ValueError(
            f"{config.model_path}: first run failed on input {list(x.shape)} "
            f"(model input {shape} {dtype}): {exc}"
        ) from exc
    first_run_ms = (time.perf_counter_ns() - start) / 1e6

    # Input conversion (quantizing for int8 models) happens once here, not in the timed region.
    feed = backend.prepare(handle, x)
    samples = time_runs(
        lambda: backend.invoke(handle, feed),
        warmup=config.warmup,
        min_runs=config.min_runs,
        min_time_s=config.min_time_s,
        max_runs=config.max_runs,
    )
    # VmHWM is the kernel's exact high-water mark of resident memory, so no polling thread is needed
    # to catch short peaks. Read it before the accuracy pass so the dataset does not count.
    peak_mb, _ = _memory_mb()

    accuracy = n_accuracy = None
    if config.data_path is not None:
        accuracy, n_accuracy = _accuracy(config, lambda a: backend.run(handle, a), x)

    total_s = sum(samples) / 1e3
    return {
        "backend": name,
        "runtime_version": backend.version(),
        "load_ms": load_ms,
        "first_run_ms": first_run_ms,
        "latency": asdict(LatencyStats.from_values(samples)),
        "throughput_ips": config.batch_size * len(samples) / total_s if total_s > 0 else 0.0,
        "peak_rss_mb": peak_mb,
        "baseline_rss_mb": baseline_mb,
        "rss_increase_mb": peak_mb - baseline_mb if peak_mb is not None and baseline_mb is not None else None,
        "accuracy": accuracy,
        "n_accuracy": n_accuracy,
    }


def _child_env() -> dict[str, str]:
    # The child must import this copy of benchmarks even when edgekd is not installed.
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _run_child(config: BenchConfig, python: str, timeout: float) -> dict[str, Any]:
    try:
        proc = subprocess.run(
            [python, "-m", "benchmarks.worker"],
            input=json.dumps(config.to_dict()),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_child_env(),
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchmarkError(f"{config.model_path}: benchmark did not finish within {timeout} s") from exc
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        last = lines[-1] if lines else "no error output"
        raise BenchmarkError(f"{config.model_path}: benchmark worker exited with {proc.returncode}: {last}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError) as exc:
        raise BenchmarkError(f"{config.model_path}: benchmark worker printed no JSON result") from exc


def _edgekd_version() -> str | None:
    try:
        return metadata.version("edgekd")
    except metadata.PackageNotFoundError:
        return None


def run_benchmark(config: BenchConfig, *, python: str = sys.executable, timeout: float = 600) -> BenchRecord:
    """Measure `config` in a fresh subprocess (so memory does not leak between models) into a record."""
    if not Path(config.model_path).is_file():
        raise ValueError(f"{config.model_path}: model file not found")
    result = _run_child(config, python, timeout)
    return BenchRecord(
        model=config.model,
        role=config.role,
        file=config.model_path,
        format=config.format,
        precision=config.precision,
        backend=result["backend"],
        target=dict(config.target),
        threads=config.threads,
        batch_size=config.batch_size,
        load_ms=result["load_ms"],
        first_run_ms=result["first_run_ms"],
        latency=LatencyStats(**result["latency"]),
        throughput_ips=result["throughput_ips"],
        peak_rss_mb=result["peak_rss_mb"],
        baseline_rss_mb=result["baseline_rss_mb"],
        rss_increase_mb=result["rss_increase_mb"],
        file_size_bytes=os.path.getsize(config.model_path),
        accuracy=result["accuracy"],
        n_accuracy=result["n_accuracy"],
        machine=machine_facts(),
        runtime_version=result["runtime_version"],
        timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        edgekd_version=_edgekd_version(),
        warmup=config.warmup,
        protocol={
            "min_runs": config.min_runs,
            "min_time_s": config.min_time_s,
            "warmup": config.warmup,
            "max_runs": config.max_runs,
        },
    )
