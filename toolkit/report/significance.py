"""Is one row really faster than another? Welch's t-test on the log of the rounds' p50s.

Rounds, not raw samples, are the independent measurements: samples inside one worker process share its
memory layout and neighbours, so a test on them calls every 1 % difference significant. Welch rather
than Mann–Whitney U: with three rounds a side the smallest two-sided U p-value is 0.1, so U could never
separate two rows at the default repeats. Logs make a 20 % slowdown and a 20 % speedup symmetric.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from toolkit.errors import InputError

__all__ = ["ALPHA", "MIN_ROUNDS", "Difference", "available", "compare_rounds", "slower_by_more_than"]

ALPHA = 0.05
MIN_ROUNDS = 2  # a side with one round has no spread to test against


@dataclass(frozen=True)
class Difference:
    """How row b's p50 compares with row a's: ratio b / a and the test's p-value (None: not tested)."""

    ratio: float
    p_value: float | None

    @property
    def tested(self) -> bool:
        return self.p_value is not None

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA

    @property
    def pct(self) -> float:
        """b's p50 relative to a's, in percent (positive: b is slower)."""
        return (self.ratio - 1) * 100

    def mark(self) -> str:
        """'' when significant, ' (n.s.)' when tested and not, ' (untested)' with too few rounds."""
        if not self.tested:
            return " (untested)"
        return "" if self.significant else " (n.s.)"


def available() -> bool:
    """Is scipy installed (the report extra)? A board with only the bench extra has no test to run."""
    return importlib.util.find_spec("scipy") is not None


def _scipy_stats():
    try:
        from scipy import stats  # the report extra; benchmarks/ on a board never needs it
    except ImportError:
        raise InputError("the significance test needs scipy: pip install 'edgekd[report]'") from None
    return stats


def _logs(a: Sequence[float], b: Sequence[float]) -> tuple[float, np.ndarray, np.ndarray]:
    ratio = float(np.median(b) / np.median(a))  # the pooled p50s' ratio, as the table shows them
    return ratio, np.log(np.asarray(a, dtype=np.float64)), np.log(np.asarray(b, dtype=np.float64))


def compare_rounds(a: Sequence[float], b: Sequence[float]) -> Difference:
    """Compare the rounds' p50s (ms) of two rows, two-sided; untested when either has fewer than
    MIN_ROUNDS."""
    ratio, la, lb = _logs(a, b)
    if len(la) < MIN_ROUNDS or len(lb) < MIN_ROUNDS:
        return Difference(ratio=ratio, p_value=None)
    p_value = float(_scipy_stats().ttest_ind(la, lb, equal_var=False).pvalue)
    # Both sides without any spread give NaN: nothing to weigh the difference against.
    return Difference(ratio=ratio, p_value=None if np.isnan(p_value) else p_value)


def slower_by_more_than(a: Sequence[float], b: Sequence[float], pct: float) -> Difference:
    """Is b significantly slower than a by more than `pct` percent? One-sided Welch test of
    mean(log b) - mean(log a) > log(1 + pct/100), so a 6 % slowdown whose noise reaches 2 % does not
    fail a 5 % gate. Untested when either side has fewer than MIN_ROUNDS."""
    ratio, la, lb = _logs(a, b)
    if len(la) < MIN_ROUNDS or len(lb) < MIN_ROUNDS:
        return Difference(ratio=ratio, p_value=None)
    shifted = la + np.log1p(pct / 100)
    p_value = float(_scipy_stats().ttest_ind(lb, shifted, equal_var=False, alternative="greater").pvalue)
    return Difference(ratio=ratio, p_value=None if np.isnan(p_value) else p_value)
