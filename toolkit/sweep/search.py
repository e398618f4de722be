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

__all__ = ["run_sweep", "front", "points", "study", "distributions", "decode", "encode"]

TRIALS = "trials.jsonl"
STUDY = "edgekd-sweep"
# The objectives, in TrialResult.objectives' order, and which way each is better.
OBJECTIVES = (("accuracy", "max"), ("p50_ms", "min"), ("size_bytes", "min"))
# (result, whether it ran now or was found finished, the front so far)
OnTrial = Callable[[TrialResult, bool, list[TrialResult]], None]


def front(results: list[TrialResult]) -> list[TrialResult]:
    """The trials no other trial beats on accuracy, p50 and file size at once."""
    flags = pareto_front([r.objectives for r in results], maximize=(True, False, False))
    return [r for r, on in zip(results, flags, strict=True) if on]


def points(sweep: SweepConfig) -> Iterator[dict[str, Any]]:
    """The grid, or `trials` seeded random draws (repeats included: they are not run twice)."""
    if sweep.search == "grid":
        yield from grid(sweep)
        return
    rng = random.Random(sweep.seed)
    for _ in range(sweep.trials or 0):
        yield sample(sweep, rng)


def run_sweep(
    sweep: SweepConfig,
    cfg: RunConfig,
    out: Path,
    *,
    on_trial: OnTrial | None = None,
    ray_address: str | None = None,
) -> list[TrialResult]:
    """Every trial of `sweep` on `cfg`, each in `out/trials/`; the finished ones (now or before). With
    `ray_address` the trials run on that Ray cluster through Ray Tune, else one after another here."""
    if ray_address is not None:
        from toolkit.sweep.cluster import check_address

        check_address(ray_address)  # before the teacher trains
    out = out.resolve()  # trials on Ray run in other processes, in other folders
    out.mkdir(parents=True, exist_ok=True)
    results = read_trials(out / TRIALS)
    teacher = prepare_teacher(cfg, out)

    def record(done: TrialResult, ran: bool) -> None:
        if ran:
            append_trial(out / TRIALS, done)
            results.append(done)
        if on_trial is not None:
            on_trial(done, ran, front(results))

    if ray_address is not None:
        from toolkit.sweep.cluster import run_on_ray

        for done in list(results):
            record(done, False)
        run_on_ray(sweep, cfg, out, teacher, results, record, ray_address)
        return results

    def trial(params: dict[str, Any]) -> TrialResult:
        key = params_key(params)
        done = next((r for r in results if r.key == key), None)
        if done is not None:
            record(done, False)
            return done
        name = f"t{len(results):03d}"
        done = run_trial(
            trial_config(cfg, params), out, name, params, key, teacher, threads=sweep.cpus_per_trial
        )
        record(done, True)
        return done

    if sweep.search == "optuna":
        _optuna(sweep, results, trial)
    else:
        for params in points(sweep):
            trial(params)
    return results


def distributions(sweep: SweepConfig) -> dict[str, Any]:
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


def _optuna(sweep: SweepConfig, results: list[TrialResult], trial: Callable[[dict], TrialResult]) -> None:
    """Ask-and-tell, one trial at a time."""
    dists = distributions(sweep)
    search = study(sweep, results)
    wanted = sweep.trials or 0
    for _ in range(20 * wanted):  # a small space runs out of new points: asked again, they are not re-run
        if len(results) >= wanted:
            break
        asked = search.ask(dists)
        done = trial(decode(sweep, asked.params))
        search.tell(asked, list(done.objectives))


def decode(sweep: SweepConfig, raw: dict[str, Any]) -> dict[str, Any]:
    """Optuna's values back to the space's (a choice's index to the choice)."""
    return {k: v if isinstance(sweep.space[k], Range) else sweep.space[k][v] for k, v in raw.items()}


def encode(sweep: SweepConfig, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's values as Optuna holds them (a choice as its index)."""
    return {k: v if isinstance(sweep.space[k], Range) else sweep.space[k].index(v) for k, v in params.items()}
