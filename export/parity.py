"""Check an exported file against its torch model: output diffs, top-1 agreement and accuracy."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["TOLERANCES", "ParityRecord", "run_file", "check_parity"]

# Per-precision limits a file must meet to ship; int8 logits move by design, so only agreement counts.
TOLERANCES: dict[str, dict[str, float]] = {
    "fp32": {"max_abs_diff": 1e-3, "top1_agreement": 0.99},
    "fp16": {"max_abs_diff": 5e-2, "top1_agreement": 0.98},
    "int8": {"top1_agreement": 0.95},
}


@dataclass
class ParityRecord:
    """How closely one file reproduces its torch model on `n` test inputs, and whether that is enough."""

    n: int
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    accuracy: float
    torch_accuracy: float
    passed: bool
    tolerance: dict[str, float]
    backend: str

    def to_dict(self) -> dict:
        return asdict(self)


def run_file(
    path: str | Path, x: np.ndarray, *, backend: str | None = None, batch_size: int = 256
) -> np.ndarray:
    """Run all of `x` through the file with a benchmark backend (the same code a board runs)."""
    from benchmarks.backends import backend_for, load_backend

    mod = load_backend(backend or backend_for(path))
    handle = mod.load(str(path), threads=os.cpu_count() or 1)
    _, shape, _ = mod.input_spec(handle)
    step = batch_size if shape[0] is None else shape[0]  # fixed-batch files (TFLite) run at their batch
    return np.concatenate([mod.run(handle, x[i : i + step]) for i in range(0, len(x), step)])


def check_parity(
    path: str | Path,
    x: np.ndarray,
    y: np.ndarray,
    reference: np.ndarray,
    *,
    precision: str,
    backend: str | None = None,
) -> ParityRecord:
    """Compare the file's outputs on `x` with the torch `reference` logits; pass/fail by `TOLERANCES`."""
    from benchmarks.backends import backend_for

    if precision not in TOLERANCES:
        raise ValueError(f"precision must be one of {sorted(TOLERANCES)}, got {precision!r}")
    backend = backend or backend_for(path)
    out = run_file(path, x, backend=backend).astype(np.float32)
    if out.shape != reference.shape:
        raise ValueError(f"{path}: output shape {out.shape} does not match torch's {reference.shape}")
    diff = np.abs(out - reference)
    pred, ref_pred = out.argmax(1), reference.argmax(1)
    rec = ParityRecord(
        n=len(x),
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        top1_agreement=float((pred == ref_pred).mean()),
        accuracy=float((pred == y).mean()),
        torch_accuracy=float((ref_pred == y).mean()),
        passed=False,
        tolerance=TOLERANCES[precision],
        backend=backend,
    )
    tol = rec.tolerance
    rec.passed = rec.top1_agreement >= tol["top1_agreement"] and rec.max_abs_diff <= tol.get(
        "max_abs_diff", np.inf
    )
    return rec
