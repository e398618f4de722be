"""Sweep trials on a Ray cluster through Ray Tune: trials train side by side, as many as the cluster's
CPUs and GPUs allow, and a trial's benchmark waits until it has its node alone (`toolkit.sweep.node`).

Every node reads the config's data and writes the sweep directory at the same paths: one machine, or a
shared file system. The driver records each trial as it finishes, so a cut-off sweep resumes.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from toolkit.config import RunConfig
from toolkit.errors import ConfigError, EdgekdError
from toolkit.rundir import RunDir
from toolkit.sweep.space import SweepConfig, params_key, trial_config
from toolkit.sweep.strategies import OBJECTIVES, decode, distributions, points, study
from toolkit.sweep.trials import TrialResult, run_trial

__all__ = ["run_on_ray", "check_address"]


def _trainable(
    config: dict[str, Any],
    *,
    sweep: SweepConfig,
    cfg: RunConfig,
    out: str,
    teacher: str,
    cwd: str,
    threads: int,
) -> None:
    """One trial inside a Ray worker: the pipeline on its own run directory, reported to Tune."""
    from ray import tune

    if Path(cwd).is_dir():  # relative paths in the config mean what they meant where the sweep started
        os.chdir(cwd)
    params = config["point"] if "point" in config else decode(sweep, config)
    name = tune.get_context().get_trial_id()
    key = params_key(params)
    run = trial_config(cfg, params)
    done = run_trial(run, Path(out), name, params, key, RunDir(Path(teacher)), threads=threads)
    metrics = {metric: getattr(done, metric) for metric, _ in OBJECTIVES}
    tune.report({**metrics, "trial_record": json.dumps(asdict(done))})


class _PicklableLock:
    """A `threading.Lock` that pickles as a fresh one. Optuna 5's GA samplers (NSGA-II) hold a bare
    lock, and Tune pickles its searcher, sampler included, into every experiment checkpoint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._lock.__exit__(*exc)

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._lock = threading.Lock()


def picklable_sampler(sampler: Any) -> Any:
    """`sampler`, its lock (optuna >= 5.0 `BaseGASampler._thread_lock`) swapped for one that pickles."""
    if isinstance(getattr(sampler, "_thread_lock", None), type(threading.Lock())):
        sampler._thread_lock = _PicklableLock()
    return sampler


def _search(sweep: SweepConfig, results: list[TrialResult]) -> tuple[dict[str, Any], Any, int]:
    """Tune's param space, search algorithm and sample count for the trials still to run."""
    from ray import tune

    if sweep.search != "optuna":
        finished = {r.key for r in results}
        pending = {params_key(p): p for p in points(sweep) if params_key(p) not in finished}
        return {"point": tune.grid_search(list(pending.values()))}, None, 1 if pending else 0
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    storage = optuna.storages.InMemoryStorage()
    told = study(sweep, results, storage=storage)  # told the finished trials, in the storage Tune loads
    algo = OptunaSearch(
        space=distributions(sweep),
        metric=[m for m, _ in OBJECTIVES],
        mode=[way for _, way in OBJECTIVES],
        sampler=picklable_sampler(told.sampler),
        storage=storage,
        study_name=told.study_name,
    )
    # Optuna may ask for a point again: that trial is run again, and recorded once.
    return {}, algo, max(0, (sweep.trials or 0) - len(results))


def _recorder(results: list[TrialResult], record: Callable[[TrialResult, bool], None]) -> Any:
    """A Tune callback, run in the driver, that records each trial as it reports."""
    from ray import tune

    class Recorder(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            done = TrialResult.from_dict(json.loads(result["trial_record"]), f"Ray trial {trial}")
            seen = any(r.key == done.key for r in results)
            if not seen:  # finishing order names the trial, as a local sweep does
                done.trial = f"t{len(results):03d}"
            record(done, not seen)

    return Recorder()


def _tuner(sweep, cfg, out: Path, teacher: RunDir, space, algo, samples: int, recorder) -> Any:
    """The Tuner: one trial per point, each asking for its CPUs and GPUs, Tune's files in DIR/ray."""
    from ray import tune

    cpus = sweep.cpus_per_trial or 1
    trainable = tune.with_parameters(
        _trainable,
        sweep=sweep,
        cfg=cfg,
        out=str(out),
        teacher=str(teacher.root),
        cwd=os.getcwd(),
        threads=cpus,
    )
    return tune.Tuner(
        tune.with_resources(trainable, {"cpu": cpus, "gpu": sweep.gpus_per_trial}),
        param_space=space,
        tune_config=tune.TuneConfig(search_alg=algo, num_samples=samples),
        run_config=tune.RunConfig(
            name=time.strftime("tune-%Y%m%d-%H%M%S"),
            storage_path=str(out / "ray"),
            verbose=0,
            callbacks=[recorder],
        ),
    )


def check_address(address: str) -> None:
    """`ConfigError` for an address the sweep cannot record trials through."""
    if address.startswith("ray://"):  # Ray Client runs Tune's driver on the head: no records here
        raise ConfigError(f"--ray {address}: give the cluster's host:port (or auto), not a ray:// address")


def run_on_ray(
    sweep: SweepConfig,
    cfg: RunConfig,
    out: Path,
    teacher: RunDir,
    results: list[TrialResult],
    record: Callable[[TrialResult, bool], None],
    address: str,
) -> None:
    """Run the sweep's remaining trials on the Ray cluster at `address` ("auto": the one this machine
    joined); `record` gets each as it finishes. Failed trials: `EdgekdError` after the others finish."""
    import ray

    space, algo, samples = _search(sweep, results)
    if not samples:
        return
    # edgekd prints a line per trial itself; Tune's newer console output prints tables even at verbose=0
    quiet = "RAY_AIR_NEW_OUTPUT" not in os.environ
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # connected before anything is put in the object store, which would start a local Ray instead
    ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        grid = _tuner(sweep, cfg, out, teacher, space, algo, samples, _recorder(results, record)).fit()
    finally:
        ray.shutdown()
        if quiet:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
    if grid.errors:
        raise EdgekdError(f"{out}: {len(grid.errors)} trial(s) failed on Ray; the first: {grid.errors[0]}")
