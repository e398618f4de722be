"""The sweep loop: grid, seeded random, or Optuna's multi-objective samplers (NSGA-II, TPE) over the
space; a finished trial is never run again, so a sweep that was cut off resumes by running it again."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from toolkit.config import RunConfig
from toolkit.report.pareto import pareto_front
from toolkit.sweep.space import Range, SweepConfig, grid, params_key, sample, trial_config
from toolkit.sweep.trials import TrialResult, append_trial, prepare_teacher, read_trials, run_trial

__all__ = ["run_sweep", "front"]

TRIALS = "trials.jsonl"
# (result, whether it ran now or was found finished, the front so far)
OnTrial = Callable[[TrialResult, bool, list[TrialResult]], None]


def front(results: list[TrialResult]) -> list[TrialResult]:
    """The trials no other trial beats on accuracy, p50 and file size at once."""
    flags = pareto_front([r.objectives for r in results], maximize=(True, False, False))
    return [r for r, on in zip(results, flags, strict=True) if on]


def _points(sweep: SweepConfig) -> Iterator[dict[str, Any]]:
    if sweep.search == "grid":
        yield from grid(sweep)
        return
    rng = random.Random(sweep.seed)
    for _ in range(sweep.trials or 0):
        yield sample(sweep, rng)


def run_sweep(
    sweep: SweepConfig, cfg: RunConfig, out: Path, *, on_trial: OnTrial | None = None
) -> list[TrialResult]:
    """Every trial of `sweep` on `cfg`, each in `out/trials/`; the finished ones (now or before)."""
    out.mkdir(parents=True, exist_ok=True)
    results = read_trials(out / TRIALS)
    teacher = prepare_teacher(cfg, out)

    def trial(params: dict[str, Any]) -> TrialResult:
        key = params_key(params)
        done = next((r for r in results if r.key == key), None)
        ran = done is None
        if done is None:
            done = run_trial(trial_config(cfg, params), out, f"t{len(results):03d}", params, key, teacher)
            append_trial(out / TRIALS, done)
            results.append(done)
        if on_trial is not None:
            on_trial(done, ran, front(results))
        return done

    if sweep.search == "optuna":
        _optuna(sweep, results, trial)
    else:
        for params in _points(sweep):
            trial(params)
    return results


def _distributions(sweep: SweepConfig) -> dict[str, Any]:
    """Optuna distributions; choices go by index (Optuna's categorical values must be scalars)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for key, dom in sweep.space.items():
        if not isinstance(dom, Range):
            out[key] = CategoricalDistribution(list(range(len(dom))))
        elif dom.integer:
            out[key] = IntDistribution(int(dom.low), int(dom.high), step=int(dom.step or 1), log=dom.log)
        else:
            out[key] = FloatDistribution(dom.low, dom.high, step=dom.step, log=dom.log)
    return out


def _optuna(sweep: SweepConfig, results: list[TrialResult], trial: Callable[[dict], TrialResult]) -> None:
    """Ask-and-tell with NSGA-II or TPE over (accuracy up, p50 down, size down); finished trials are told
    to the study first, so a resumed sweep continues the same search."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = _distributions(sweep)
    # Seeded by the sweep and the trials already done: a resumed sweep does not redraw its first points.
    seed = sweep.seed + len(results)
    sampler = (
        optuna.samplers.NSGAIISampler(seed=seed)
        if sweep.sampler == "nsga2"
        else optuna.samplers.TPESampler(seed=seed)
    )
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"], sampler=sampler)
    for r in results:
        params = _encode(sweep, r.params)
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, values=r.objectives))
    wanted = sweep.trials or 0
    for _ in range(20 * wanted):  # a small space runs out of new points: asked again, they are not re-run
        if len(results) >= wanted:
            break
        asked = study.ask(dists)
        done = trial(_decode(sweep, asked.params))
        study.tell(asked, list(done.objectives))


def _decode(sweep: SweepConfig, raw: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(sweep.space[k], Range) else sweep.space[k][v] for k, v in raw.items()}


def _encode(sweep: SweepConfig, params: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(sweep.space[k], Range) else sweep.space[k].index(v) for k, v in params.items()}
