"""Per-operator profiles from a runtime's own profiler: where a file's time goes, node by node.

One `OpTime` per graph node (its op type, where it ran, its input dtypes, calls and total time) and the
runtime's own total per run, so the per-op sum can be held against it (the rest is runtime overhead).
onnxruntime's session profiling is read today (`profile_onnx`); other runtimes are the next step (#38).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["OpTime", "Profile", "profile_onnx"]


@dataclass
class OpTime:
    """One node's kernel time over the profiled runs."""

    node: str
    op_type: str
    provider: str
    input_dtypes: list[str]
    calls: int = 0
    total_us: float = 0.0


@dataclass
class Profile:
    """A file's per-node times over `runs` runs, and the runtime's own time for those runs."""

    path: str
    runs: int
    run_us: float  # the runtime's whole-run time, summed over the runs
    ops: list[OpTime] = field(default_factory=list)

    @property
    def ops_us(self) -> float:
        return sum(op.total_us for op in self.ops)

    def by_op_type(self) -> dict[str, float]:
        """Total microseconds per op type, largest first."""
        totals: dict[str, float] = {}
        for op in self.ops:
            totals[op.op_type] = totals.get(op.op_type, 0.0) + op.total_us
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


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
        op.total_us += float(e["dur"])
    return Profile(str(path), kept, run_us, sorted(ops.values(), key=lambda o: -o.total_us))
