"""The search strategies of a sweep: the grid or random points, and the Optuna study (NSGA-II or TPE) that
proposes trials here and on Ray; a choice travels through Optuna as its index."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from toolkit.sweep.space import Point, Range, SweepConfig, grid, sample
from toolkit.sweep.trials import TrialResult

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

__all__ = ["OBJECTIVES", "STUDY", "points", "study", "distributions", "decode", "encode"]

STUDY = "edgekd-sweep"
# The objectives, in TrialResult.objectives' order, and which way each is better.
OBJECTIVES = (("accuracy", "max"), ("p50_ms", "min"), ("size_bytes", "min"))


def points(sweep: SweepConfig) -> Iterator[Point]:
    """The grid, or `trials` seeded random draws (repeats included: they are not run twice)."""
    if sweep.search == "grid":
        yield from grid(sweep)
        return
    rng = random.Random(sweep.seed)
    for _ in range(sweep.trials or 0):
        yield sample(sweep, rng)


def distributions(sweep: SweepConfig) -> dict[str, BaseDistribution]:
    """Optuna distributions; choices go by index (Optuna's categorical values must be scalars)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, BaseDistribution] = {}
    for key, dom in sweep.space.items():
        if not isinstance(dom, Range):
            out[key] = CategoricalDistribution(list(range(len(dom))))
        elif dom.integer:
            out[key] = IntDistribution(int(dom.low), int(dom.high), step=int(dom.step or 1), log=dom.log)
        else:
            out[key] = FloatDistribution(dom.low, dom.high, step=dom.step, log=dom.log)
    return out


def study(sweep: SweepConfig, results: list[TrialResult], storage: Any = None) -> Any:
    """An Optuna study with NSGA-II or TPE over (accuracy up, p50 down, size down), told the finished
    trials first, so a resumed sweep continues the same search."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = distributions(sweep)
    # Seeded by the sweep and the trials already done: a resumed sweep does not redraw its first points.
    seed = sweep.seed + len(results)
    sampler = (
        optuna.samplers.NSGAIISampler(seed=seed)
        if sweep.sampler == "nsga2"
        else optuna.samplers.TPESampler(seed=seed)
    )
    made = optuna.create_study(
        directions=[f"{way}imize" for _, way in OBJECTIVES],
        sampler=sampler,
        storage=storage,
        study_name=STUDY,
    )
    for r in results:
        params = encode(sweep, r.params)
        made.add_trial(optuna.trial.create_trial(params=params, distributions=dists, values=r.objectives))
    return made


def decode(sweep: SweepConfig, raw: dict[str, int | float]) -> Point:
    """Optuna's values back to the space's (a choice's index to the choice)."""
    return {k: v if isinstance(sweep.space[k], Range) else sweep.space[k][v] for k, v in raw.items()}


def encode(sweep: SweepConfig, params: Point) -> dict[str, int | float]:
    """A trial's values as Optuna holds them (a choice as its index)."""
    return {k: v if isinstance(sweep.space[k], Range) else sweep.space[k].index(v) for k, v in params.items()}
