"""Classification metrics of a model's logits: top-1/top-5, per-class accuracy, calibration error."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["softmax", "topk_accuracy", "per_class_accuracy", "expected_calibration_error", "evaluate"]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)  # shift so exp() cannot overflow
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def topk_accuracy(logits: np.ndarray, y: np.ndarray, k: int = 1) -> float:
    """Share of rows whose label is among the `k` largest logits."""
    top = np.argpartition(-logits, kth=min(k, logits.shape[1]) - 1, axis=1)[:, :k]
    return float((top == y[:, None]).any(axis=1).mean())


def per_class_accuracy(
    logits: np.ndarray, y: np.ndarray, num_classes: int | None = None
) -> list[float | None]:
    """Top-1 accuracy of each class's rows (None for a class absent from `y`)."""
    pred = logits.argmax(1)
    n = num_classes or logits.shape[1]
    return [float((pred[y == c] == c).mean()) if (y == c).any() else None for c in range(n)]


def expected_calibration_error(logits: np.ndarray, y: np.ndarray, *, bins: int = 15) -> float:
    """ECE (Guo et al. 2017, "On Calibration of Modern Neural Networks"), equal-width confidence bins:

    sum over bins of (bin size / n) * |accuracy(bin) - mean confidence(bin)|.
    """
    probs = softmax(logits.astype(np.float64))
    conf, pred = probs.max(1), probs.argmax(1)
    correct = pred == y
    # Bin b holds confidences in (b/bins, (b+1)/bins]; confidence is always > 1/classes > 0.
    which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)


def evaluate(logits: np.ndarray, y: np.ndarray, *, labels: Sequence[str] = ()) -> dict:
    """top1, top5 (when there are more than 5 classes), per-class accuracy by label, and ECE."""
    classes = logits.shape[1]
    names = list(labels) if len(labels) == classes else [str(c) for c in range(classes)]
    out = {"top1": topk_accuracy(logits, y, 1)}
    if classes > 5:
        out["top5"] = topk_accuracy(logits, y, 5)
    out["per_class"] = dict(zip(names, per_class_accuracy(logits, y, classes), strict=True))
    out["ece"] = expected_calibration_error(logits, y)
    return out
