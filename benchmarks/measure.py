"""Inside the worker: load, cold run, warm-up, timed runs on one or N concurrent streams, accuracy, memory."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.backends import backend_for, load_backend
from benchmarks.errors import InputError
from benchmarks.outputs import batched_outputs, output_check
from benchmarks.records import LatencyStats

if TYPE_CHECKING:
    from benchmarks.protocol import BenchConfig

_DEFAULT_PREPROCESSING = {"scale": 1 / 255, "mean": [0.0], "std": [1.0]}  # a bare file: x / 255

__all__ = ["measure", "time_runs", "time_streams", "feed_shape"]


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


def time_streams(
    fns: list[Callable[[], object]], *, warmup: int, min_runs: int, min_time_s: float, max_runs: int
) -> tuple[list[list[float]], float]:
    """Run each `fn` in its own thread, all released together; (per-stream samples in ms, wall seconds)."""
    barrier = threading.Barrier(len(fns))
    samples: list[list[float]] = [[] for _ in fns]
    spans: list[tuple[int, int]] = [(0, 0)] * len(fns)
    errors: list[BaseException] = []

    def stream(i: int) -> None:
        try:
            for _ in range(warmup):
                fns[i]()
            barrier.wait()  # warm-up done everywhere: the timed regions start together
            start = time.perf_counter_ns()
            samples[i] = time_runs(
                fns[i], warmup=0, min_runs=min_runs, min_time_s=min_time_s, max_runs=max_runs
            )
            spans[i] = (start, time.perf_counter_ns())
        except BaseException as exc:  # re-raised in the caller's thread below
            errors.append(exc)
            barrier.abort()  # the other streams would wait on the barrier forever

    threads = [threading.Thread(target=stream, args=(i,), daemon=True) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)), errors[0])
    wall_ns = max(end for _, end in spans) - min(start for start, _ in spans)
    return samples, wall_ns / 1e9


def memory_mb() -> tuple[float | None, float | None]:
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


def feed_shape(
    config: BenchConfig, name: str, shape: list[int | None]
) -> tuple[list[int] | None, list[str], str | None]:
    """(shape to feed, notes on dynamic dims chosen here, reason to skip) for the model's input `shape`."""
    given, batch, path = config.input_shape, config.batch_size, config.model_path
    if given is not None and len(given) != len(shape):
        raise InputError(
            f"{path}: input shape {given} has {len(given)} dims, input {name!r} has {len(shape)} ({shape})"
        )
    if shape and shape[0] is not None and shape[0] != batch:
        return None, [], f"the file takes batch {shape[0]} only (input {name!r} is fixed at {shape})"
    dims, notes = [], []
    for i, dim in enumerate(shape):
        want = given[i] if given is not None else None
        if dim is not None:
            if i > 0 and want is not None and want != dim:
                raise InputError(f"{path}: input shape {given} sets dim {i} to {want}, the model fixes {dim}")
            dims.append(batch if i == 0 else dim)
        elif i == 0:
            dims.append(batch)
            if given is None:  # a manifest or --shape names dim 0 as the batch axis; a bare file does not
                notes.append(
                    f"input {name!r} dim 0 is dynamic: set to the batch size {batch} (--shape sets it)"
                )
        elif want is not None:
            dims.append(want)
            notes.append(f"input {name!r} dim {i} is dynamic: set to {want} from the given shape")
        else:
            dims.append(1)
            notes.append(f"input {name!r} dim {i} is dynamic: defaulted to 1 (--shape sets it)")
    return dims, notes, None


def _timing_input(dims: list[int], dtype: Any) -> np.ndarray:
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind in "iub":  # ids, raw pixels, quantized input: small values fit every int type
        return rng.integers(0, 10, dims).astype(dtype)
    return rng.standard_normal(dims, dtype=np.float32).astype(dtype)


ACCURACY_BATCH = 256


def _accuracy(
    config: BenchConfig, run: Callable[[np.ndarray], np.ndarray], x_like: np.ndarray
) -> tuple[float, int, dict[str, Any] | None]:
    """Top-1 accuracy over `config.data_path`, in batches shaped like `x_like` (last batch padded), and the
    first rows' outputs checked against `config.reference` when the bundle ships one."""
    path = config.data_path
    with np.load(path) as data:
        if "x" not in data or "y" not in data:
            raise InputError(f"{path}: expected arrays 'x' and 'y', got {sorted(data.files)}")
        xs, ys = data["x"], data["y"]
    tokens = (config.preprocessing or {}).get("kind") == "tokens"
    want = ("int", 2, "int x (N, L) of token ids") if tokens else ("uint8", 4, "uint8 x (N, C, H, W)")
    kind_ok = xs.dtype.kind in "iu" if tokens else xs.dtype == np.uint8
    if not kind_ok or xs.ndim != want[1] or len(xs) != len(ys) or len(xs) == 0:
        raise InputError(f"{path}: expected {want[2]} and y (N,), got x {xs.dtype} {xs.shape}, y {ys.shape}")
    if xs.shape[1:] != x_like.shape[1:]:
        raise InputError(
            f"{path}: examples have shape {list(xs.shape[1:])}, model {config.model_path} "
            f"expects {list(x_like.shape[1:])}"
        )
    # Imported here, after the peak memory was read: pydantic must not count towards the model's memory.
    from benchmarks.preprocess import model_input, parse_preprocessing

    pre = parse_preprocessing(
        config.preprocessing if tokens else {**_DEFAULT_PREPROCESSING, **(config.preprocessing or {})}
    )
    ref = config.reference
    rows = int(ref["rows"]) if ref is not None else 0
    batch, correct, head = x_like.shape[0], 0, []
    for start in range(0, len(xs), batch):
        logits = batched_outputs(run, model_input(xs[start : start + batch], pre), batch)
        correct += int((logits.argmax(axis=1) == ys[start : start + len(logits)]).sum())
        if start < rows:
            head.append(logits)
    return correct / len(xs), len(xs), _output_check(ref, head) if ref is not None else None


def _output_check(ref: dict[str, Any], head: list[np.ndarray]) -> dict[str, Any]:
    with np.load(ref["path"]) as data:
        reference = data[ref["key"]]
    out = np.concatenate(head)[: len(reference)]
    return output_check(out, reference, ref["tolerance"], machine=ref["machine"])


def _affinity() -> list[int] | None:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return None


def _first_run(backend: Any, handle: Any, x: np.ndarray, config: BenchConfig, spec: tuple) -> float:
    """Milliseconds of the cold first inference; a failure names the file, input and model input."""
    start = time.perf_counter_ns()
    try:
        backend.run(handle, x)
    except ValueError:
        raise  # backends name the file in their own ValueErrors
    except Exception as exc:
        raise InputError(
            f"{config.model_path}: first run failed on input {list(x.shape)} "
            f"(model input {spec[1]} {spec[2]}): {exc}"
        ) from exc
    return (time.perf_counter_ns() - start) / 1e6


def _invoker(backend: Any, handle: Any, feed: Any) -> Callable[[], object]:
    return lambda: backend.invoke(handle, feed)


def _timed_streams(
    backend: Any, handle: Any, x: np.ndarray, config: BenchConfig
) -> tuple[list[list[float]], float]:
    """Timed runs (ms) per stream and the wall time (s) of the timed region, on `config.streams` handles."""
    # One handle per stream: TFLite interpreters are not thread-safe, and a shared ORT session would
    # measure its internal locking. The extra handles are warmed like the first, outside any timing.
    handles = [handle]
    for _ in range(config.streams - 1):
        handles.append(backend.load(config.model_path, threads=config.threads, **config.backend_options))
        backend.run(handles[-1], x)
    # Input conversion (quantizing for int8 models) happens once here, not in the timed region.
    calls = [_invoker(backend, h, backend.prepare(h, x)) for h in handles]
    protocol = dict(
        warmup=config.warmup, min_runs=config.min_runs, min_time_s=config.min_time_s, max_runs=config.max_runs
    )
    if config.streams == 1:
        per_stream = [time_runs(calls[0], **protocol)]
        return per_stream, sum(per_stream[0]) / 1e3  # one stream: the timed region is exactly the timed calls
    return time_streams(calls, **protocol)


def measure(config: BenchConfig) -> dict[str, Any]:
    """Benchmark `config.model_path` in this process and return plain measurements (or a skip reason)."""
    name = config.backend or backend_for(config.model_path)
    backend = load_backend(name)
    _, baseline_mb = memory_mb()

    start = time.perf_counter_ns()
    handle = backend.load(config.model_path, threads=config.threads, **config.backend_options)
    load_ms = (time.perf_counter_ns() - start) / 1e6
    spec = backend.input_spec(handle)
    dims, notes, skip = feed_shape(config, spec[0], spec[1])
    if skip is not None:
        return {"skipped": skip}
    x = _timing_input(dims, spec[2])
    first_run_ms = _first_run(backend, handle, x, config, spec)
    describe = getattr(backend, "describe", None)  # after the first run: some providers build engines there
    info = describe(handle) if describe is not None else None

    per_stream, wall_s = _timed_streams(backend, handle, x, config)
    # VmHWM is the kernel's exact high-water mark of resident memory, so no polling thread is needed
    # to catch short peaks. Read it before the accuracy pass so the dataset does not count.
    peak_mb, _ = memory_mb()

    accuracy = n_accuracy = check = None
    if config.data_path is not None:
        # Accuracy does not depend on the batch: a file with a dynamic batch axis runs it 256 at a time.
        like = np.zeros((ACCURACY_BATCH, *x.shape[1:]), x.dtype) if spec[1] and spec[1][0] is None else x
        accuracy, n_accuracy, check = _accuracy(config, lambda a: backend.run(handle, a), like)

    samples = [s for stream in per_stream for s in stream]
    images = config.batch_size * len(samples)
    return {
        "backend": name,
        "runtime_version": backend.version(),
        "load_ms": load_ms,
        "first_run_ms": first_run_ms,
        "latency": asdict(LatencyStats.from_values(samples)),
        "throughput_ips": images / wall_s if wall_s > 0 else 0.0,
        "images": images,
        "wall_s": wall_s,
        "runs_per_stream": [len(s) for s in per_stream],
        "peak_rss_mb": peak_mb,
        "baseline_rss_mb": baseline_mb,
        "rss_increase_mb": peak_mb - baseline_mb if peak_mb is not None and baseline_mb is not None else None,
        "accuracy": accuracy,
        "n_accuracy": n_accuracy,
        "output_check": check,
        "input_shape": list(x.shape),
        "cpu_affinity": _affinity(),
        "backend_info": info,
        "notes": notes,
    }
