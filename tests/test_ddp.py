"""Distillation as 2 processes under torchrun (DistributedDataParallel, gloo, CPU): ranks stay identical."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import torch

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import torch
    import torch.distributed as dist

    from toolkit.distill.train import Teacher, TrainSettings, predict, train_model
    from toolkit.models import ModelSpec, create_model

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 96).astype(np.int64)
    x = rng.normal(0, 0.3, (96, 1, 8, 8)).astype(np.float32)
    for i, c in enumerate(y):
        x[i, 0, (c // 2) * 4 : (c // 2) * 4 + 4, (c % 2) * 4 : (c % 2) * 4 + 4] += 2.0

    def model(widths, seed):
        torch.manual_seed(seed)
        spec = ModelSpec(
            arch="cnn_student", kwargs={"widths": widths}, input_shape=(1, 8, 8), labels=("a", "b", "c")
        )
        return create_model(spec)

    teacher = model((16, 32), 1).eval()
    student = model((4, 8), 0)
    init = {k: v.clone() for k, v in student.state_dict().items()}
    params = [name for name, _ in student.named_parameters()]
    settings = TrainSettings(epochs=2, batch_size=16, lr=1e-2, methods=("kd", "hint"), augment=True)
    hist = train_model(student, x, y, settings, teachers=[Teacher(model=teacher, logits=predict(teacher, x))])
    out = {"state": student.state_dict(), "init": init, "params": params, "history": hist}
    torch.save(out, f"{sys.argv[1]}/rank{rank}.pt")
    dist.destroy_process_group()
    """
)


def test_two_ranks_end_with_identical_weights(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.getcwd())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*cmd, str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    assert r0["state"].keys() == r1["state"].keys()
    for k, v in r0["state"].items():
        assert torch.equal(v, r1["state"][k]), k
    # both started from the same seed-0 init and trained: every learnable tensor moved away from it
    for k, v in r0["init"].items():
        assert torch.equal(v, r1["init"][k]), k
    assert r0["params"] and set(r0["params"]) <= r0["state"].keys()
    unmoved = [k for k in r0["params"] if torch.equal(r0["state"][k], r0["init"][k])]
    assert not unmoved, f"parameters still at their initial values: {unmoved}"

    # and they agree on the all-reduced epoch metrics
    def metrics(h):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in h]

    assert metrics(r0["history"]) == metrics(r1["history"])
    assert len(r0["history"]) == 2 and r0["history"][0]["teacher_targets"] == "online"


def test_edgekd_distill_under_torchrun_writes_one_run(idx_folder, tmp_path):
    import json

    import yaml

    cfg = {
        "data": {"root": str(idx_folder), "val_size": 12},
        "teacher": {"arch": "cnn_teacher", "kwargs": {"widths": [8, 16, 16], "hidden": 16}, "epochs": 1},
        "student": {"arch": "cnn_student", "kwargs": {"widths": [4, 8, 8]}, "epochs": 1, "batch_size": 16},
        "distill": {"scratch_control": False},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.getcwd())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cli = ["-m", "toolkit.cli.main", "distill", str(tmp_path / "c.yaml"), "--out", str(out)]
    proc = subprocess.run([*cmd, *cli], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "distill" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["student_kd"]["world_size"] == 2
    assert (out / "distill" / "student_kd.pt").exists() and not list((out / "distill").glob("*.partial"))
    assert (
        proc.stderr.count("Distillation (test split)") + proc.stdout.count("Distillation (test split)") == 1
    )
