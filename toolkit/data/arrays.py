"""Image arrays: an `.npz` file (`x`, `y`, optionally `x_val`/`y_val`, `x_test`/`y_test`) or a factory.

A factory is `package.module:function` returning `{"train": (x, y), "test": (x, y)}` (optionally `"val"`
and `"labels"`). Images are uint8, or float in [0, 1] or [0, 255] (rounded to uint8: the bundle's test
data and the board's preprocessing take uint8), in the layout the config names.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import DataError, first_line

__all__ = ["load_npz", "load_factory", "as_images"]

_KEYS = {"train": ("x", "y"), "val": ("x_val", "y_val"), "test": ("x_test", "y_test")}


def load_npz(path: Path, layout: str) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str] | None]:
    """The splits an `.npz` holds (at least `x`, `y`) and its `labels` array when present."""
    if not path.is_file():
        raise DataError(f"{path}: npz file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz file ({first_line(e, limit=160)})") from None
    if "x" not in arrays or "y" not in arrays:
        raise DataError(f"{path}: expected arrays 'x' and 'y', got {sorted(arrays)[:8]}")
    splits = {}
    for name, (kx, ky) in _KEYS.items():
        if kx in arrays or ky in arrays:
            if kx not in arrays or ky not in arrays:
                raise DataError(f"{path}: {kx!r} and {ky!r} come together; the file has only one of them")
            x = as_images(arrays[kx], layout, f"{path}:{kx}")
            splits[name] = (x, _labels(arrays[ky], f"{path}:{ky}"))
            _same_length(splits[name], f"{path}:{kx}/{ky}")
    labels = [str(s) for s in arrays["labels"].tolist()] if "labels" in arrays else None
    return splits, labels


def load_factory(spec: str, layout: str) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str] | None]:
    """Call `package.module:function` and check what it returns."""
    module_name, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise DataError(f"{spec}: cannot import the data factory ({first_line(e, limit=160)})") from None
    try:
        out: Any = fn()
    except Exception as e:
        raise DataError(f"{spec}: the data factory failed: {type(e).__name__}: {str(e)[:160]}") from e
    if not isinstance(out, dict) or "train" not in out or "test" not in out:
        raise DataError(f"{spec}: expected a dict with 'train' and 'test' (x, y) pairs")
    splits = {}
    for name in ("train", "val", "test"):
        if name in out:
            x, y = out[name]
            splits[name] = (as_images(np.asarray(x), layout, f"{spec}[{name}]"), _labels(np.asarray(y), spec))
            _same_length(splits[name], f"{spec}[{name}]")
    labels = [str(s) for s in out["labels"]] if "labels" in out else None
    return splits, labels


def as_images(x: np.ndarray, layout: str, where: str) -> np.ndarray:
    """uint8 (N, C, H, W) from uint8 or float images in `layout` (NCHW, NHWC, or NHW for gray)."""
    if layout == "NHW" and x.ndim == 3:
        x = x[:, None]
    elif x.ndim != 4:
        raise DataError(f"{where}: expected 4-D images in layout {layout}, got shape {list(x.shape)}")
    elif layout == "NHWC":
        x = x.transpose(0, 3, 1, 2)
    if x.shape[1] not in (1, 3):
        raise DataError(f"{where}: {x.shape[1]} channels in layout {layout}; expected 1 or 3 (right layout?)")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    is_float = np.issubdtype(x.dtype, np.floating)
    if not is_float and not np.issubdtype(x.dtype, np.integer):
        raise DataError(f"{where}: images of dtype {x.dtype}; expected uint8 or float")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise DataError(f"{where}: images contain NaN or Inf")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 255:
        raise DataError(f"{where}: values span [{lo:g}, {hi:g}]; expected [0, 1] or [0, 255]")
    scale = 255.0 if hi <= 1.0 and is_float else 1.0
    return np.ascontiguousarray(np.rint(x * scale).astype(np.uint8))


def _labels(y: np.ndarray, where: str) -> np.ndarray:
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise DataError(f"{where}: labels must be a 1-D integer array, got {y.dtype} {list(y.shape)}")
    if np.issubdtype(y.dtype, np.floating) and not (np.isfinite(y).all() and (y == np.rint(y)).all()):
        raise DataError(f"{where}: labels must be whole numbers (found NaN, Inf or fractions)")
    if len(y) and y.min() < 0:
        raise DataError(f"{where}: negative label {int(y.min())}")
    return y.astype(np.int64)


def _same_length(pair: tuple[np.ndarray, np.ndarray], where: str) -> None:
    if len(pair[0]) != len(pair[1]):
        raise DataError(f"{where}: {len(pair[0])} images but {len(pair[1])} labels")
