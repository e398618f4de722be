"""A file's outputs on rows, and how they compare: top-1 agreement, and the bundle's reference outputs (each
file's logits on the first test images where it was exported, so a board shows that its runtime reproduces
them within the file's tolerance)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.errors import InputError

__all__ = ["REFERENCE_ROWS", "batched_outputs", "run_file", "top1_agreement", "agreement", "output_check"]

# 512 images: top-1 agreement to 0.2 %, and 20 KB of float32 per 10-class file.
REFERENCE_ROWS = 512


def batched_outputs(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: int) -> np.ndarray:
    """`run` over `x` in batches of `batch` rows (the last one zero-padded: fixed-batch files), flattened
    to (N, -1)."""
    out = []
    for start in range(0, len(x), batch):
        chunk = x[start : start + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - n, *chunk.shape[1:]), chunk.dtype)])
        out.append(np.asarray(run(chunk), dtype=np.float32).reshape(batch, -1)[:n])
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def run_file(
    path: str | Path, x: np.ndarray, *, backend: str | None = None, batch_size: int = 256
) -> np.ndarray:
    """Run all of `x` through the file with a benchmark backend (the same code a board runs)."""
    from benchmarks.backends import backend_for, load_backend

    mod = load_backend(backend or backend_for(path))
    handle = mod.load(str(path), threads=os.cpu_count() or 1)
    _, shape, _ = mod.input_spec(handle)
    if shape[0] is not None:  # fixed-batch files (TFLite) run at their batch, the last one padded
        return batched_outputs(lambda a: mod.run(handle, a), x, shape[0])
    return np.concatenate([mod.run(handle, x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def top1_agreement(out: np.ndarray, reference: np.ndarray) -> float:
    """Share of rows whose top-1 class in `out` is the reference's (logits, or 1-D labels); 1.0 for none."""
    ref = reference if reference.ndim == 1 else reference.argmax(1)
    return float((out.argmax(1) == ref).mean()) if len(out) else 1.0


def agreement(
    path: str | Path, reference: str | Path | np.ndarray, rows: np.ndarray, *, backend: str | None = None
) -> float:
    """Top-1 agreement of the file at `path` on `rows` with `reference`: another file, or its outputs."""
    if not isinstance(reference, np.ndarray):
        reference = run_file(reference, rows, backend=backend)
    return top1_agreement(run_file(path, rows, backend=backend), reference)


def output_check(
    out: np.ndarray, reference: np.ndarray, tolerance: Mapping[str, float], *, machine: str
) -> dict[str, Any]:
    """The record's `output_check`: `out` against the export machine's `reference` for the same rows."""
    if out.shape != reference.shape:
        raise InputError(f"outputs have shape {list(out.shape)}, the reference {list(reference.shape)}")
    max_diff = float(np.abs(out - reference).max()) if out.size else 0.0
    agreement = top1_agreement(out, reference)
    passed = agreement >= tolerance.get("top1_agreement", 1.0) and max_diff <= tolerance.get(
        "max_abs_diff", np.inf
    )
    return {
        "reference": f"this file's outputs on {machine}",
        "rows": len(out),
        "max_abs_diff": max_diff,
        "top1_agreement": agreement,
        "tolerance": dict(tolerance),
        "passed": passed,
    }
