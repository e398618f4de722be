"""Per-operator profiles from a runtime's own profiler: where a file's time goes, node by node.

One `OpTime` per graph node (op type, where it ran, input dtypes, calls, total time) and the runtime's own
time per run, held against the file's unprofiled p50 (the profiler's own cost is the gap). onnxruntime gives
per-node times (session profiling); LiteRT's Python API gives only the op list with dtypes, no times.
`profiles.json` is defined here once (`write_profiles`, `read_profiles`).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.errors import InputError
from benchmarks.files import write_text_atomic

__all__ = [
    "OpTime",
    "Profile",
    "ProfileFile",
    "profile_onnx",
    "list_tflite_ops",
    "unprofiled_p50_us",
    "pinned_cores",
    "write_profiles",
    "read_profiles",
    "PROFILE_VERSION",
]

PROFILE_VERSION = 1
_INT8 = {"int8", "uint8"}
# onnxruntime ops that compute in int8 whatever their first input (they quantize it themselves)
_INT8_OPS = {"DynamicQuantizeMatMul", "MatMulIntegerToFloat", "DynamicQuantizeLSTM"}


@dataclass
class OpTime:
    """One node's kernel time over the profiled runs (None where the runtime gives no times)."""

    node: str
    op_type: str
    provider: str
    input_dtypes: list[str]
    calls: int = 0
    total_us: float | None = 0.0

    @property
    def dtype(self) -> str:
        """What the op computes in, from its first input: int8, fp16 or fp32 (else the dtype's name)."""
        first = (self.input_dtypes or ["?"])[0]
        if first in _INT8 or self.op_type in _INT8_OPS or self.op_type.startswith("QLinear"):
            return "int8"
        return {"float": "fp32", "float32": "fp32", "float16": "fp16"}.get(first, first)


@dataclass
class Profile:
    """A file's per-node times over `runs` runs, the runtime's own time for them and the unprofiled p50."""

    path: str
    runs: int
    run_us: float | None  # the runtime's whole-run time, summed over the runs; None: not given
    ops: list[OpTime] = field(default_factory=list)
    model: str = ""
    format: str = ""
    precision: str = ""
    backend: str = ""
    p50_us: float | None = None  # the same file timed without the profiler (same thread, input)
    timed: bool = True  # False: the runtime lists its ops but times none of them

    @property
    def ops_us(self) -> float:
        return sum(op.total_us or 0.0 for op in self.ops)

    def per_run(self, us: float | None) -> float | None:
        return None if us is None or not self.runs else us / self.runs

    def by_op_type(self) -> dict[str, float]:
        """Total microseconds per op type, largest first."""
        totals: dict[str, float] = {}
        for op in self.ops:
            totals[op.op_type] = totals.get(op.op_type, 0.0) + (op.total_us or 0.0)
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


@dataclass
class ProfileFile:
    """`profiles.json`: the profiles of one bundle on one machine, and how they were made."""

    machine: dict[str, Any]
    threads: int
    runs: int
    warmup: int
    profiles: list[Profile]
    version: int = PROFILE_VERSION
    target: dict[str, Any] = field(default_factory=dict)  # name, kind (native, emulated), label: as bench's


def _node_events(events: list[dict], skip_runs: int) -> tuple[list[dict], float, int]:
    """The kernel events and the summed model_run time of the runs after the first `skip_runs`."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"),
                  key=lambda e: e["ts"])  # fmt: skip
    kept = runs[skip_runs:]
    if not kept:
        return [], 0.0, 0
    start = kept[0]["ts"]
    nodes = [
        e
        for e in events
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start
    ]
    return nodes, float(sum(e["dur"] for e in kept)), len(kept)


def profile_onnx(
    path: str | Path, x: np.ndarray, *, threads: int = 1, runs: int = 100, warmup: int = 10
) -> Profile:
    """Run `x` through `path` `warmup + runs` times with onnxruntime's profiler on; the timed runs' nodes."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgekd-profile-") as tmp:
        opts = ort.SessionOptions()
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, "ort")
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x}
        for _ in range(warmup + runs):
            session.run(None, feed)
        with open(session.end_profiling()) as f:
            events = json.load(f)
    nodes, run_us, kept = _node_events(events, warmup)
    ops: dict[str, OpTime] = {}
    for e in nodes:
        args = e.get("args", {})
        name = e["name"].removesuffix("_kernel_time")
        dtypes = [next(iter(t)) for t in args.get("input_type_shape", [])]
        op = ops.setdefault(name, OpTime(name, args.get("op_name", "?"), args.get("provider", "?"), dtypes))
        op.calls += 1
        op.total_us = (op.total_us or 0.0) + float(e["dur"])
    return Profile(str(path), kept, run_us, sorted(ops.values(), key=lambda o: -(o.total_us or 0.0)))


def list_tflite_ops(path: str | Path) -> Profile:
    """The ops of a `.tflite` file with their input dtypes, untimed: LiteRT's Python API has no op
    profiler (its per-op timings need the C++ benchmark tool, which no wheel ships)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = []
    for op in interpreter._get_ops_details():  # the only op listing the Python API exposes
        dtypes = [np.dtype(tensors[i]["dtype"]).name for i in op["inputs"] if i >= 0 and i in tensors]
        ops.append(OpTime(f"{op['op_name']}_{op['index']}", op["op_name"], "tflite", dtypes, 0, None))
    return Profile(str(path), 0, None, ops, timed=False)


def unprofiled_p50_us(run_once, *, runs: int, warmup: int) -> float:
    """Median microseconds of `run_once()` over `runs` calls after `warmup`, with no profiler on."""
    for _ in range(warmup):
        run_once()
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter_ns()
        run_once()
        times[i] = time.perf_counter_ns() - t0
    return float(np.median(times) / 1e3)


@contextmanager
def pinned_cores(n: int) -> Iterator[None]:
    """This process on `n` of its cores for the block (as bench pins its workers); unpinned where the OS
    has no affinity call."""
    if not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(sorted(before)[:n]))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def write_profiles(path: str | Path, data: ProfileFile) -> Path:
    """Write `profiles.json` whole (never a half-written file)."""
    return write_text_atomic(path, json.dumps(asdict(data), indent=1, sort_keys=True) + "\n")


def read_profiles(path: str | Path) -> ProfileFile:
    """Read `profiles.json`; `ValueError` naming the file when it is not one."""
    try:
        raw = json.loads(Path(path).read_text())
        if raw.get("version") != PROFILE_VERSION:
            raise InputError(f"version {raw.get('version')!r}, expected {PROFILE_VERSION}")
        profiles = [Profile(**{**p, "ops": [OpTime(**op) for op in p["ops"]]}) for p in raw.pop("profiles")]
        return ProfileFile(**raw, profiles=profiles)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InputError(f"{path}: not an edgekd profiles.json ({exc})") from exc
