"""Seeded, stratified splits of labelled examples (for data that does not come split)."""

from __future__ import annotations

import numpy as np

from toolkit.errors import DataError

__all__ = ["stratified_split"]


def stratified_split(
    targets: np.ndarray, fractions: dict[str, float], seed: int, where: object
) -> dict[str, np.ndarray]:
    """Sorted indices of `train` and of each split in `fractions`, taken from every class alike.

    A class with three or more examples gives at least one to each split; smaller classes stay in train.
    """
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {name: [] for name in ["train", *fractions]}
    for c in np.unique(targets):
        idx = rng.permutation(np.flatnonzero(targets == c)).tolist()
        for name, frac in fractions.items():
            take = max(1, round(frac * len(idx))) if len(idx) >= 3 else 0
            parts[name] += idx[:take]
            idx = idx[take:]
        parts["train"] += idx
    for name, idx in parts.items():
        if not idx:
            raise DataError(f"{where}: too few examples to split off a {name} split")
    return {name: np.asarray(sorted(idx), dtype=np.int64) for name, idx in parts.items()}
