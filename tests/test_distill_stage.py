"""The distill stage on a tiny IDX data set: several teachers, loaded teachers, seeds, resume, CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from toolkit.cli.main import app
from toolkit.config import RunConfig
from toolkit.distill.checkpoints import load_checkpoint
from toolkit.pipeline.distill_stage import run_distill
from toolkit.rundir import RunDir


def _cfg(root, **over) -> RunConfig:
    raw = {
        "data": {"root": str(root), "val_size": 12},
        "teacher": {
            "arch": "cnn_teacher",
            "kwargs": {"widths": [8, 16, 16], "hidden": 16},
            "epochs": 2,
            "batch_size": 16,
            "lr": 0.01,
        },
        "student": {
            "arch": "cnn_student",
            "kwargs": {"widths": [4, 8, 8]},
            "epochs": 2,
            "batch_size": 16,
            "lr": 0.01,
        },
        "distill": {"temperature": 2.0, "alpha": 0.5},
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(raw.get(k), dict):
            raw[k] = {**raw[k], **v}
        else:
            raw[k] = v
    if "teachers" in raw:
        raw.pop("teacher")
    return RunConfig.model_validate(raw)


def test_seeds_give_a_kd_vs_scratch_table_from_the_trained_models(idx_folder, tmp_path):
    run = RunDir(tmp_path / "run")
    summary = run_distill(_cfg(idx_folder, distill={"seeds": [0, 1]}), run)
    for name in ("teacher", "student_kd", "student_scratch", "student_kd_seed1", "student_scratch_seed1"):
        assert run.checkpoint(name).exists(), name
        assert (run.distill / f"{name}_metrics.jsonl").exists() and (
            run.distill / f"{name}_metrics.csv"
        ).exists()
    cmp = summary.kd_vs_scratch
    assert cmp is not None and [r.seed for r in cmp.per_seed] == [0, 1]
    assert cmp.per_seed[1].student_kd == summary.models["student_kd_seed1"].test_accuracy
    assert cmp.mean_kd == pytest.approx(np.mean([r.student_kd for r in cmp.per_seed]))
    assert cmp.delta_points == pytest.approx(100 * (cmp.mean_kd - cmp.mean_scratch), abs=1e-3)
    kd = summary.models["student_kd"]
    assert kd.teacher_targets == "cached" and kd.methods == ["kd"] and kd.seed == 0
    assert set(kd.test) == {"top1", "per_class", "ece"}  # 3 classes: no top-5
    # the test accuracy in the summary is the checkpoint's own, recomputed here
    model, spec, _ = load_checkpoint(run.checkpoint("student_kd"))
    assert spec.labels == ("0", "1", "2")
    written = json.loads((run.distill / "summary.json").read_text())
    assert written == summary.to_json_dict() and written["kd_vs_scratch"] == cmp.model_dump()


def test_two_teachers_one_trained_one_loaded_from_torchscript(idx_folder, tmp_path):
    from toolkit.models import ModelSpec, create_model

    torch.manual_seed(5)
    other = create_model(
        ModelSpec(
            arch="cnn_student", kwargs={"widths": [8, 8, 8]}, input_shape=(1, 8, 8), labels=("0", "1", "2")
        )
    ).eval()
    ts = tmp_path / "other.ts"
    torch.jit.save(torch.jit.script(other), str(ts))
    cfg = _cfg(
        idx_folder,
        teachers=[
            {
                "arch": "cnn_teacher",
                "kwargs": {"widths": [8, 16, 16], "hidden": 16},
                "epochs": 1,
                "batch_size": 16,
                "weight": 2.0,
            },
            {"source": {"path": str(ts)}, "weight": 1.0},
        ],
        distill={"methods": ["kd", "dkd"], "scratch_control": False},
    )
    run = RunDir(tmp_path / "run")
    summary = run_distill(cfg, run)
    t2 = summary.models["teacher_2"]
    assert t2.loaded and t2.source is not None and t2.source["kind"] == "torchscript" and t2.weight == 1.0
    assert summary.models["teacher"].weight == 2.0
    # the loaded teacher is evaluated like a trained one, from its own logits
    x = np.load(run.distill / "teacher_2_logits.npz")["logits"]
    assert x.shape == (summary.data.train, 3)
    assert summary.models["student_kd"].methods == ["kd", "dkd"] and summary.kd_vs_scratch is None
    assert "kd_vs_scratch" not in json.loads(run.summary.read_text())
    loaded, _, _ = load_checkpoint(run.checkpoint("teacher_2"))
    probe = torch.randn(2, 1, 8, 8)
    assert torch.allclose(loaded(probe), other(probe))


def test_hint_with_augmentation_uses_the_online_teacher(idx_folder, tmp_path):
    cfg = _cfg(
        idx_folder,
        distill={
            "methods": ["kd", "hint"],
            "augment": True,
            "scratch_control": False,
            "hint": {"student_layer": "features.1", "teacher_layer": "features.1"},
        },
    )
    summary = run_distill(cfg, RunDir(tmp_path / "run"))
    assert summary.models["student_kd"].teacher_targets == "online"
    assert not (tmp_path / "run" / "distill" / "teacher_logits.npz").exists()  # nothing cached


def test_train_teacher_then_distill_reuses_it_and_resume_finishes_the_same(idx_folder, tmp_path):
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(_cfg(idx_folder).model_dump(mode="json", exclude={"teacher"})))
    out = tmp_path / "run"
    runner = CliRunner()
    r = runner.invoke(app, ["train-teacher", str(cfg_path), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert not (out / "distill" / "student_kd.pt").exists()
    r = runner.invoke(app, ["distill", str(cfg_path), "--out", str(out)])
    assert r.exit_code == 0, r.output
    first = json.loads((out / "distill" / "summary.json").read_text())
    assert first["teacher"]["reused"] is True
    assert "KD vs scratch over 1 seed(s)" in r.output
    before = torch.load(out / "distill" / "student_kd.pt", weights_only=True)["state_dict"]
    # every model's per-epoch state is complete, so --resume trains nothing and lands on the same weights
    r = runner.invoke(app, ["distill", str(cfg_path), "--out", str(out), "--resume"])
    assert r.exit_code == 0, r.output
    after = torch.load(out / "distill" / "student_kd.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(before[k], after[k]) for k in before)
    again = json.loads((out / "distill" / "summary.json").read_text())
    assert again["student_kd"]["test_accuracy"] == first["student_kd"]["test_accuracy"]


def test_bad_teacher_source_is_one_line(idx_folder, tmp_path):
    cfg = _cfg(idx_folder, teachers=[{"source": {"path": str(tmp_path / "missing.pt")}}])
    from toolkit.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        run_distill(cfg, RunDir(tmp_path / "run"))
    assert "missing.pt" in str(err.value) and "\n" not in str(err.value)


def _edgekd_process(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "toolkit.cli.main", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _timeless(info: dict) -> dict:
    """A model's summary without its wall-clock fields (the only ones a resumed run may change)."""
    return {k: v for k, v in info.items() if k not in ("train_seconds", "epoch_seconds")}


def test_distill_killed_mid_student_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGKILL while the KD student trains, then `--resume`: same checkpoints and summary as one clean run."""
    from tests.conftest import write_idx

    rng = np.random.default_rng(1)
    root = tmp_path / "idx"
    root.mkdir()
    for split, n in (("train", 3000), ("t10k", 200)):  # epochs long enough (~0.5 s) to kill one midway
        y = rng.integers(0, 3, n).astype(np.uint8)
        x = rng.integers(0, 60, (n, 8, 8)).astype(np.uint8)
        for i, c in enumerate(y):
            x[i, (c // 2) * 4 : (c // 2) * 4 + 4, (c % 2) * 4 : (c % 2) * 4 + 4] += 150
        write_idx(root / f"{split}-images-idx3-ubyte.gz", x)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", y)
    cfg = _cfg(root, teacher={"epochs": 1}, student={"epochs": 4}).model_dump(mode="json")
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))

    clean, cut = tmp_path / "clean", tmp_path / "cut"
    assert _edgekd_process("distill", cfg_path, "--out", clean).wait(timeout=600) == 0
    proc = _edgekd_process("distill", cfg_path, "--out", cut)
    metrics = cut / "distill" / "student_kd_metrics.jsonl"
    deadline = time.monotonic() + 300
    # Line 2 is written after epoch 1's state is saved: from then on the kill lands mid-student.
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2) and proc.poll() is None:
        assert time.monotonic() < deadline, "the KD student never finished an epoch"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    epochs_done = metrics.read_text().count("\n")
    assert 2 <= epochs_done < 4, epochs_done  # killed mid-student, not after it
    first_epoch = metrics.read_text().splitlines()[0]
    assert not (cut / "distill" / "student_kd.pt").exists()
    assert not (cut / "distill" / "summary.json").exists()

    resumed = _edgekd_process("distill", cfg_path, "--out", cut, "--resume")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    assert metrics.read_text().splitlines()[0] == first_epoch  # epoch 1 kept (its seconds too), not redone
    for name in ("teacher", "student_kd", "student_scratch"):
        a = torch.load(clean / "distill" / f"{name}.pt", weights_only=True)["state_dict"]
        b = torch.load(cut / "distill" / f"{name}.pt", weights_only=True)["state_dict"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    want = json.loads((clean / "distill" / "summary.json").read_text())
    got = json.loads((cut / "distill" / "summary.json").read_text())
    for name in ("student_kd", "student_scratch"):
        assert _timeless(got[name]) == _timeless(want[name]), name
    assert got["kd_vs_scratch"] == want["kd_vs_scratch"]
    assert [json.loads(line)["train_accuracy"] for line in metrics.read_text().splitlines()] == [
        json.loads(line)["train_accuracy"]
        for line in (clean / "distill" / "student_kd_metrics.jsonl").read_text().splitlines()
    ]
