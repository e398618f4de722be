"""The sweep loop: grid, seeded random, or Optuna's multi-objective samplers (NSGA-II, TPE) over the
space; a finished trial is never run again, so a sweep that was cut off resumes by running it again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from toolkit.config import RunConfig
from toolkit.report.pareto import pareto_front
from toolkit.sweep.cluster import check_address, run_on_ray
from toolkit.sweep.space import Point, SweepConfig, params_key, trial_config
from toolkit.sweep.strategies import decode, distributions, points, study
from toolkit.sweep.trials import TrialResult, append_trial, prepare_teacher, read_trials, run_trial

__all__ = ["run_sweep", "front"]

TRIALS = "trials.jsonl"
# (result, whether it ran now or was found finished, the front so far)
OnTrial = Callable[[TrialResult, bool, list[TrialResult]], None]


def front(results: list[TrialResult]) -> list[TrialResult]:
    """The trials no other trial beats on accuracy, p50 and file size at once."""
    flags = pareto_front([r.objectives for r in results], maximize=(True, False, False))
    return [r for r, on in zip(results, flags, strict=True) if on]


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
        for done in list(results):
            record(done, False)
        run_on_ray(sweep, cfg, out, teacher, results, record, ray_address)
        return results

    def trial(params: Point) -> TrialResult:
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

    _search_here(sweep, results, trial)
    return results


def _search_here(sweep: SweepConfig, results: list[TrialResult], trial: Callable[[Point], TrialResult]):
    """The trials one after another on this machine: asked of Optuna, or the grid's or random points."""
    if sweep.search == "optuna":
        _optuna(sweep, results, trial)
    else:
        for params in points(sweep):
            trial(params)


def _optuna(sweep: SweepConfig, results: list[TrialResult], trial: Callable[[Point], TrialResult]) -> None:
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
