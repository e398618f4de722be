"""`edgekd sweep`: trials are pipeline runs sharing one teacher; grid, random, Optuna; resume; report."""

from __future__ import annotations

import itertools
import json
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import FASHION_MNIST, TINY
from toolkit.cli.main import app
from toolkit.config import DEFAULT_CONFIG
from toolkit.errors import ConfigError
from toolkit.sweep.node import Phase, overlaps
from toolkit.sweep.space import Range, SweepConfig, grid, load_sweep, params_key, sample, trial_config

pytest.importorskip("torch")
needs_data = pytest.mark.skipif(
    not FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist not installed (make data)"
)

# Every trial: the tiny data, one ONNX student file and the teacher's fp32 ONNX baseline, briefly measured.
FIXED = {
    "distill.scratch_control": False,
    "export.formats": ["onnx"],
    "export.precisions": ["fp32"],
    "export.teacher_precisions": ["fp32"],
    "export.sensitivity": False,
    "bench.repeats": 1,
    "bench.min_runs": 20,
    "bench.min_time_s": 0.0,
}


def _sweep_file(tmp_path, **fields) -> object:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"base": str(TINY), "fixed": FIXED, **fields}))
    return path


def test_grid_random_and_the_space_checks(tmp_path):
    sweep = SweepConfig.model_validate(
        {"space": {"student.epochs": [1, 2], "distill.alpha": {"low": 0.2, "high": 0.6, "step": 0.2}}}
    )
    points = grid(sweep)
    assert len(points) == 6 and points[0] == {"student.epochs": 1, "distill.alpha": 0.2}
    assert {p["distill.alpha"] for p in points} == {0.2, 0.4, 0.6}
    ints = Range.model_validate({"low": 3, "high": 5, "int": True})
    assert ints.values() == [3, 4, 5]
    draws = [sample(sweep, random.Random(0)) for _ in range(2)]
    assert draws[0] == draws[1]  # seeded
    assert params_key(points[0]) == params_key(dict(reversed(list(points[0].items()))))
    with pytest.raises(ValueError, match="trials share one teacher"):
        SweepConfig.model_validate({"space": {"teacher.epochs": [1, 2]}})
    with pytest.raises(ValueError, match="needs trials"):
        SweepConfig.model_validate({"search": "optuna", "space": {"student.epochs": [1, 2]}})
    with pytest.raises(ValueError, match="no grid"):
        grid(SweepConfig.model_validate({"space": {"distill.alpha": {"low": 0.1, "high": 0.9}}}))


def test_a_trial_config_is_the_base_with_its_values_and_bad_ones_are_one_line(tmp_path):
    sweep, cfg = load_sweep(_sweep_file(tmp_path, space={"distill.temperature": [2.0, 4.0]}))
    assert cfg.export.formats == ["onnx"] and cfg.distill.scratch_control is False  # fixed applied
    trial = trial_config(cfg, {"distill.temperature": 4.0, "student.kwargs.widths": [8, 16, 16]})
    assert trial.distill.temperature == 4.0 and trial.student.kwargs == {"widths": [8, 16, 16]}
    assert trial.teachers == cfg.teachers
    with pytest.raises(ConfigError, match=r"distill.alpha: Input should be less than or equal to 1"):
        trial_config(cfg, {"distill.alpha": 3.0})
    with pytest.raises(ConfigError, match="sweep.yaml: space: Field required"):
        load_sweep(_sweep_file(tmp_path))


def _trials(out) -> list[dict]:
    return [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]


@needs_data
@pytest.mark.slow
def test_grid_sweep_shares_the_teacher_reports_and_resumes(tmp_path):
    path = _sweep_file(tmp_path, space={"distill.temperature": [2.0, 4.0]}, max_accuracy_drop=100.0)
    out = tmp_path / "sweep"
    r = CliRunner().invoke(app, ["sweep", str(path), "--out", str(out)])
    assert r.exit_code == 0, r.output + repr(r.exception)
    trials = _trials(out)
    assert [t["params"] for t in trials] == [{"distill.temperature": 2.0}, {"distill.temperature": 4.0}]
    for t in trials:
        run = out / t["run_dir"]
        summary = json.loads((run / "distill" / "summary.json").read_text())
        assert summary["teacher"]["reused"] is True  # trained once, in out/teacher
        assert summary["student_kd"]["temperature"] == t["params"]["distill.temperature"]
        assert t["file"] == "student_kd onnx fp32" and 0 < t["accuracy"] <= 1 and t["p50_ms"] > 0
    assert (out / "teacher" / "distill" / "teacher_logits.npz").is_file()  # shared after the first trial
    text = (out / "sweep.md").read_text()
    assert "t000 student_kd" in text and "t001 student_kd" in text and "## Recommendation" in text
    best = yaml.safe_load((out / "best.yaml").read_text())  # a 100-point budget: some student qualifies
    assert best["distill"]["temperature"] in (2.0, 4.0)
    again = CliRunner().invoke(app, ["sweep", str(path), "--out", str(out)])
    assert again.exit_code == 0 and again.output.count("(finished before)") == 2
    assert _trials(out) == trials  # nothing ran again


@needs_data
@pytest.mark.slow
def test_optuna_sweep_runs_its_trials_and_a_resumed_one_only_the_new_ones(tmp_path):
    pytest.importorskip("optuna")
    space = {"distill.alpha": {"low": 0.1, "high": 0.9}, "student.kwargs.widths": [[4, 8, 8], [8, 16, 16]]}
    path = _sweep_file(tmp_path, search="optuna", trials=2, space=space)
    out = tmp_path / "sweep"
    assert CliRunner().invoke(app, ["sweep", str(path), "--out", str(out)]).exit_code == 0
    first = _trials(out)
    assert len(first) == 2 and all(0.1 <= t["params"]["distill.alpha"] <= 0.9 for t in first)
    assert all(t["params"]["student.kwargs.widths"] in ([4, 8, 8], [8, 16, 16]) for t in first)
    path.write_text(path.read_text().replace("trials: 2", "trials: 3"))
    r = CliRunner().invoke(app, ["sweep", str(path), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert _trials(out)[:2] == first and len(_trials(out)) == 3, (path.read_text(), r.output)
    assert (
        "No trial's KD student is within" in (out / "sweep.md").read_text() or (out / "best.yaml").is_file()
    )


def test_a_ray_client_address_is_refused_before_anything_trains(tmp_path):
    path = _sweep_file(tmp_path, space={"distill.temperature": [2.0]})
    r = CliRunner().invoke(
        app, ["sweep", str(path), "--out", str(tmp_path / "s"), "--ray", "ray://head:10001"]
    )
    assert (
        isinstance(r.exception, ConfigError) and not (tmp_path / "s").exists()
    )  # main() prints it in one line
    assert "--ray ray://head:10001: give the cluster's host:port (or auto)" in str(r.exception)


SWEEPS = sorted((DEFAULT_CONFIG.parent / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_shipped_sweeps_are_valid(path):
    sweep, cfg = load_sweep(path)
    assert sweep.space and cfg.teachers


@pytest.fixture
def ray_head():
    """A one-node Ray cluster on 127.0.0.1 with 2 CPUs, started and stopped with Ray's own CLI."""
    pytest.importorskip("ray.tune")
    ray = Path(sys.executable).with_name("ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = [str(ray), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run(
        start + ["--include-dashboard=false", "--disable-usage-stats"], check=True, timeout=180, **quiet
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(ray), "stop", "--force"], check=False, timeout=120, **quiet)


@pytest.mark.parametrize("sampler", ["nsga2", "tpe"])
def test_tunes_optuna_searcher_survives_its_checkpoint(tmp_path, sampler):
    """Tune pickles its searcher into each experiment checkpoint; optuna 5's NSGA-II holds a bare lock."""
    pytest.importorskip("ray.tune")
    optuna = pytest.importorskip("optuna")
    from toolkit.sweep.cluster import _search

    space = {"distill.alpha": {"low": 0.1, "high": 0.9}, "student.kwargs.widths": [[4, 8, 8], [8, 16, 16]]}
    sweep = SweepConfig.model_validate({"search": "optuna", "sampler": sampler, "trials": 3, "space": space})
    _, algo, samples = _search(sweep, [])
    assert samples == 3
    algo.save(str(tmp_path / "searcher.pkl"))  # what Tune does; raised "cannot pickle '_thread.lock'"
    algo.restore(str(tmp_path / "searcher.pkl"))
    asked = algo.suggest("t0")
    assert 0.1 <= asked["distill.alpha"] <= 0.9 and asked["student.kwargs.widths"] in (0, 1)
    kind = optuna.samplers.NSGAIISampler if sampler == "nsga2" else optuna.samplers.TPESampler
    assert isinstance(algo._sampler, kind)


@needs_data
@pytest.mark.slow
def test_a_sweep_on_ray_gets_the_local_accuracies_and_benchmarks_alone(tmp_path, ray_head):
    space = {"distill.temperature": [1.0, 2.0, 4.0]}
    path = _sweep_file(tmp_path, space=space, cpus_per_trial=1)  # 1 torch thread here and on Ray
    here, there = tmp_path / "local", tmp_path / "ray"
    r = CliRunner().invoke(app, ["sweep", str(path), "--out", str(here)])
    assert r.exit_code == 0, r.output + repr(r.exception)
    r = CliRunner().invoke(app, ["sweep", str(path), "--out", str(there), "--ray", ray_head])
    assert r.exit_code == 0, r.output + repr(r.exception)
    local, remote = _trials(here), _trials(there)
    assert len(local) == len(remote) == 3 and r.output.count("front so far") == 3
    assert {t["key"]: t["accuracy"] for t in remote} == {t["key"]: t["accuracy"] for t in local}
    phases = [(t["trial"], Phase(**p)) for t in remote for p in t["phases"]]
    assert sorted(p.name for _, p in phases) == ["bench"] * 3 + ["distill"] * 3 + ["export"] * 3
    assert overlaps(phases) == []  # no benchmark shared its node with anything
    work = [(t, p) for t, p in phases if p.name != "bench"]
    assert any(  # two trials' training or export did run side by side
        a != b and p.start < q.end and q.start < p.end for (a, p), (b, q) in itertools.combinations(work, 2)
    )
    assert "Every benchmark (3) had its node alone" in (there / "sweep.md").read_text()
    again = CliRunner().invoke(app, ["sweep", str(path), "--out", str(there), "--ray", ray_head])
    assert again.exit_code == 0 and again.output.count("(finished before)") == 3 and _trials(there) == remote
    # Optuna's NSGA-II through Tune's OptunaSearch, told the finished trials when resumed
    space = {"distill.alpha": {"low": 0.1, "high": 0.9}, "student.kwargs.widths": [[4, 8, 8], [8, 16, 16]]}
    path = _sweep_file(tmp_path, search="optuna", trials=2, space=space, cpus_per_trial=1)
    optuna_out = tmp_path / "optuna"
    for trials in (2, 3):
        path.write_text(path.read_text().replace("trials: 2", f"trials: {trials}"))
        r = CliRunner().invoke(app, ["sweep", str(path), "--out", str(optuna_out), "--ray", ray_head])
        assert r.exit_code == 0, r.output + repr(r.exception)
        assert len(_trials(optuna_out)) == trials and "Configuration for experiment" not in r.output
    assert all(0.1 <= t["params"]["distill.alpha"] <= 0.9 for t in _trials(optuna_out))
