"""Check an exported file against its torch model: output diffs, top-1 agreement and accuracy."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from benchmarks.outputs import run_file, top1_agreement
from toolkit.errors import InputError

if TYPE_CHECKING:
    from benchmarks.manifest import Parity

__all__ = ["TOLERANCES", "accuracy", "check_parity", "runtime_status"]

# Per-precision limits a file must meet to ship; int8 logits move by design, so only agreement counts.
TOLERANCES: dict[str, dict[str, float]] = {
    "fp32": {"max_abs_diff": 1e-3, "top1_agreement": 0.99},
    "fp16": {"max_abs_diff": 5e-2, "top1_agreement": 0.98},
    "int8": {"top1_agreement": 0.95},
    "dynamic-int8": {"top1_agreement": 0.97},
}

_OP_VERSION = re.compile(r"builtin opcode '(\w+)' version '(\d+)'")


def accuracy(path: str | Path, x: np.ndarray, y: np.ndarray, *, backend: str | None = None) -> float:
    """Top-1 accuracy of a file on `x` against the labels `y` (`run_file`)."""
    return top1_agreement(run_file(path, x, backend=backend), y)


def _compare(out: np.ndarray, reference: np.ndarray, tol: dict[str, float]) -> tuple[float, float, bool]:
    """(max abs diff, top-1 agreement, within `tol`) of `out` against the torch `reference` logits."""
    max_diff = float(np.abs(out - reference).max())
    agreement = top1_agreement(out, reference)
    passed = agreement >= tol["top1_agreement"] and max_diff <= tol.get("max_abs_diff", np.inf)
    return max_diff, agreement, passed


def _status(max_diff: float, agreement: float, passed: bool) -> str:
    if passed:
        return "ok"
    return f"outside tolerance: max_abs_diff {max_diff:.3g}, top-1 agreement {agreement:.4f}"


def _rejection(path: str | Path, exc: BaseException) -> str:
    """One line for an interpreter that would not build or run the file, e.g. "op CONV_2D version 99"."""
    text = str(exc).removeprefix(f"{path}: ")
    if m := _OP_VERSION.search(text):
        return f"op {m.group(1)} version {m.group(2)}"
    return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)


def runtime_status(
    path: str | Path, x: np.ndarray, reference: np.ndarray, *, backend: str, tolerance: dict[str, float]
) -> str:
    """How runtime `backend` does on the file: ok, not installed, rejects: <why>, or outside tolerance."""
    from benchmarks.backends import available

    if not available(backend):
        return "not installed"
    try:
        out = run_file(path, x, backend=backend).astype(np.float32)
    except ImportError as e:  # found but broken, e.g. tflite_runtime 2.14 (built for numpy 1) on numpy 2
        return f"cannot import: {_rejection(path, e)}"
    except (ValueError, RuntimeError) as e:  # an old interpreter refusing a newer op version, say
        return f"rejects: {_rejection(path, e)}"
    if out.shape != reference.shape:
        return f"rejects: output shape {list(out.shape)}, torch's is {list(reference.shape)}"
    return _status(*_compare(out, reference, tolerance))


def check_parity(
    path: str | Path,
    x: np.ndarray,
    y: np.ndarray,
    reference: np.ndarray,
    *,
    precision: str,
    backend: str | None = None,
    layout: Literal["NCHW", "NHWC", "NL"] = "NCHW",
) -> Parity:
    """Compare the file's outputs on NCHW `x` with the torch `reference` logits; pass/fail by `TOLERANCES`.

    `layout="NHWC"` feeds the file `x` transposed. TFLite files also run under the other TFLite runtime.
    """
    from benchmarks.backends import backend_for, backend_spec, backend_specs

    if precision not in TOLERANCES:
        raise InputError(f"precision must be one of {sorted(TOLERANCES)}, got {precision!r}")
    if layout not in ("NCHW", "NHWC", "NL"):  # NL: token ids, fed as they are
        raise InputError(f"layout must be NCHW, NHWC or NL, got {layout!r}")
    if layout == "NHWC":
        if x.ndim != 4:
            raise InputError(f"{path}: layout NHWC needs 4-D (N, C, H, W) test data, got {list(x.shape)}")
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    backend = backend or backend_for(path)
    out = run_file(path, x, backend=backend).astype(np.float32)
    if out.shape != reference.shape:
        raise InputError(f"{path}: output shape {out.shape} does not match torch's {reference.shape}")
    tol = TOLERANCES[precision]
    max_diff, agreement, passed = _compare(out, reference, tol)
    pred = out.argmax(1)
    # Each runtime is named as a board's `pip list` shows it. A file also runs under every other backend of
    # its format: TFLite files under tflite_runtime too, as boards may ship only that wheel (<= 2.14).
    spec = backend_spec(backend)
    runtimes = {spec.distribution: _status(max_diff, agreement, passed)}
    for other in (s for s in backend_specs() if s.name != backend and set(s.formats) & set(spec.formats)):
        runtimes[other.distribution] = runtime_status(path, x, reference, backend=other.name, tolerance=tol)
    # The parity record's one definition is the manifest's: what is checked here is what is stored.
    # Imported here: a board checking runtimes with numpy alone (runtime_status) needs no pydantic.
    from benchmarks.manifest import Parity

    return Parity(
        n=len(x),
        max_abs_diff=max_diff,
        mean_abs_diff=float(np.abs(out - reference).mean()),
        top1_agreement=agreement,
        accuracy=float((pred == y).mean()),
        torch_accuracy=float((reference.argmax(1) == y).mean()),
        passed=passed,
        tolerance=tol,
        backend=backend,
        layout=layout,
        runtimes=runtimes,
    )
