"""Pareto fronts over plain tuples: which points no other point beats on every axis at once."""

from __future__ import annotations

from collections.abc import Sequence

from toolkit.errors import InputError

__all__ = ["dominates", "pareto_front"]

Point = Sequence[float]


def dominates(a: Point, b: Point, maximize: Sequence[bool]) -> bool:
    """True when `a` is at least as good as `b` on every axis and strictly better on one."""
    at_least = all((x >= y) if up else (x <= y) for x, y, up in zip(a, b, maximize, strict=True))
    strictly = any((x > y) if up else (x < y) for x, y, up in zip(a, b, maximize, strict=True))
    return at_least and strictly


def pareto_front(points: Sequence[Point], *, maximize: Sequence[bool] = (True, False)) -> list[bool]:
    """For each point, whether no other point dominates it; equal points are all on the front.

    The default reads points as (accuracy, cost): higher accuracy is better, lower cost is better.
    """
    for i, p in enumerate(points):
        if len(p) != len(maximize):
            raise InputError(f"points[{i}] has {len(p)} values, expected {len(maximize)} (one per axis)")
    # Quadratic, which is fine: a report has tens of rows per target, not thousands.
    return [not any(dominates(q, p, maximize) for q in points) for p in points]
