"""Label budgets: keep N labels per class (or a fraction) of the training split, stratified and seeded; the
other training rows become an unlabeled pool whose labels are dropped here, so no training path can read them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from toolkit.data.store import take_rows
from toolkit.errors import DataError, InputError

__all__ = ["LabelBudget", "LabeledRows", "label_budget_rows", "apply_label_budget"]


class LabelBudget(BaseModel):
    """`data.label_budget`: `per_class: N` labels of each class, or `fraction: f` of each class's rows."""

    model_config = ConfigDict(extra="forbid")

    per_class: int | None = Field(None, ge=1)
    fraction: float | None = Field(None, gt=0, le=1)
    seed: int = 0

    @model_validator(mode="after")
    def _one_rule(self):
        if (self.per_class is None) == (self.fraction is None):
            raise InputError("label_budget: give per_class or fraction, one of them")
        return self

    def describe(self) -> str:
        rule = (
            f"{self.per_class} per class"
            if self.per_class is not None
            else f"{self.fraction:g} of each class"
        )
        return f"{rule}, seed {self.seed}"


@dataclass(frozen=True)
class LabeledRows:
    """Which training rows keep their label (sorted indices) and which went to the pool, a hash of the kept
    indices, and the seeded walk that chose them: only labels in `walk[:decided]` can change the choice."""

    kept: np.ndarray
    pool: np.ndarray
    sha256: str
    budget: str
    walk: np.ndarray
    decided: int


def label_budget_rows(y: np.ndarray, budget: LabelBudget, where: object) -> LabeledRows:
    """Walk the rows in a seeded random order and keep each one whose class has not yet met its quota (a
    smaller class keeps all its rows): the first rows of every class in one order, independent of the rest."""
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise DataError(f"{where}: the label budget keeps a single class; a classifier needs two or more")
    walk = np.random.default_rng(budget.seed).permutation(len(y))
    walked = y[walk]
    if budget.per_class is not None:
        quota = np.minimum(counts, budget.per_class)
    else:
        quota = np.maximum(1, np.round(budget.fraction * counts)).astype(int)
    seen = np.zeros(len(walk), np.int64)  # how many rows of its class the walk has met up to each step
    for c in classes:
        mine = walked == c
        seen[mine] = np.arange(1, mine.sum() + 1)
    keep = seen <= quota[np.searchsorted(classes, walked)]
    kept = np.sort(walk[keep])
    digest = hashlib.sha256(kept.astype(np.int64).tobytes()).hexdigest()
    decided = int(np.flatnonzero(keep)[-1]) + 1
    return LabeledRows(kept, np.sort(walk[~keep]), digest, budget.describe(), walk, decided)


def apply_label_budget(splits, budget: LabelBudget, where: object):
    """`splits` with only the budget's labeled rows in train; the others as `pool_x`, without their labels."""
    rows = label_budget_rows(np.asarray(splits.train_y), budget, where)
    return replace(
        splits,
        train_x=take_rows(splits.train_x, rows.kept),
        train_y=np.asarray(splits.train_y)[rows.kept],
        pool_x=take_rows(splits.train_x, rows.pool) if len(rows.pool) else None,
        labeled=rows,
    )
