"""Reference outputs in a bundle: each file's logits on the first test images where it was exported, so a
board shows that its runtime reproduces them (max |diff|, top-1 agreement) within the file's tolerance."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from benchmarks.errors import InputError

__all__ = ["REFERENCE_ROWS", "batched_outputs", "output_check"]

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


def output_check(
    out: np.ndarray, reference: np.ndarray, tolerance: Mapping[str, float], *, machine: str
) -> dict[str, Any]:
    """The record's `output_check`: `out` against the export machine's `reference` for the same rows."""
    if out.shape != reference.shape:
        raise InputError(f"outputs have shape {list(out.shape)}, the reference {list(reference.shape)}")
    max_diff = float(np.abs(out - reference).max()) if out.size else 0.0
    agreement = float((out.argmax(1) == reference.argmax(1)).mean()) if len(out) else 1.0
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
