"""Stage 1: train (or reuse) the teacher, distill the student, train the scratch control; save checkpoints."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from toolkit.config import RunConfig, TrainConfig
from toolkit.data import DataSplits, load_idx_splits
from toolkit.pipeline.rundir import RunDir

__all__ = ["run_distill", "load_splits", "load_checkpoint"]


def load_splits(cfg: RunConfig) -> DataSplits:
    d = cfg.data
    return load_idx_splits(
        d.root, val_size=d.val_size, seed=cfg.seed, limit_train=d.limit_train, limit_test=d.limit_test
    )


def load_checkpoint(path: Path):
    """Rebuild the model a checkpoint describes; returns (model in eval mode, spec, checkpoint dict)."""
    import torch

    from toolkit.models import ModelSpec, create_model

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    spec = ModelSpec.from_dict(ckpt["spec"])
    model = create_model(spec)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), spec, ckpt


def _train_one(
    name,
    tcfg: TrainConfig,
    splits,
    xs: dict,
    run: RunDir,
    cfg: RunConfig,
    *,
    alpha=0.0,
    teacher_logits=None,
    on_step=None,
) -> dict:
    import torch

    from toolkit.distill.train import TrainSettings, accuracy, predict, train_model
    from toolkit.models import ModelSpec, count_macs, count_params, create_model

    spec = ModelSpec(
        arch=tcfg.arch,
        kwargs=tcfg.kwargs,
        input_shape=splits.input_shape,
        mean=splits.mean,
        std=splits.std,
        labels=splits.labels,
    )
    settings = TrainSettings(
        epochs=tcfg.epochs,
        batch_size=tcfg.batch_size,
        lr=tcfg.lr,
        weight_decay=tcfg.weight_decay,
        seed=cfg.seed,
        temperature=cfg.distill.temperature,
        alpha=alpha,
    )
    torch.manual_seed(cfg.seed)  # same init for KD and scratch students: the control differs only in the loss
    model = create_model(spec)
    metrics = run.distill / f"{name}_metrics.jsonl"
    metrics.unlink(missing_ok=True)
    t0 = time.perf_counter()
    history = train_model(
        model,
        xs["train"],
        splits.train_y,
        settings,
        teacher_logits=teacher_logits,
        val=(xs["val"], splits.val_y),
        metrics_path=metrics,
        on_step=on_step and (lambda d, t, m: on_step(name, d, t, m)),
    )
    info = {
        "arch": spec.arch,
        "params": count_params(model),
        "macs": count_macs(model, spec.input_shape),
        "epochs": tcfg.epochs,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "alpha": alpha,
        "temperature": cfg.distill.temperature if alpha else None,
        "val_accuracy": history[-1]["val_accuracy"],
        "test_accuracy": accuracy(predict(model, xs["test"]), splits.test_y),
    }
    ckpt = {
        "spec": spec.to_dict(),
        "train": tcfg.model_dump(mode="json"),
        "seed": cfg.seed,
        "data": cfg.data.model_dump(mode="json"),
        "state_dict": model.state_dict(),
        "info": info,
    }
    tmp = run.checkpoint(name).with_suffix(".partial")
    torch.save(ckpt, tmp)
    tmp.replace(run.checkpoint(name))
    return info


def _reusable_teacher(run: RunDir, cfg: RunConfig) -> dict | None:
    """The saved teacher's info if it was trained with exactly this teacher, data and seed config."""
    path = run.checkpoint("teacher")
    if not path.exists():
        return None
    import torch

    # Only the metadata is compared: no need to build the model and load its weights here.
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    same = (
        ckpt["train"] == cfg.teacher.model_dump(mode="json")
        and ckpt["seed"] == cfg.seed
        and ckpt["data"] == cfg.data.model_dump(mode="json")
    )
    return dict(ckpt["info"], reused=True) if same else None


def _teacher_logits(run: RunDir, x: np.ndarray) -> np.ndarray:
    """Teacher logits on the (augmentation-free) training images, computed once per teacher checkpoint."""
    from export._files import sha256_file
    from toolkit.distill.train import predict

    cache, sha = run.distill / "teacher_logits.npz", sha256_file(run.checkpoint("teacher"))
    if cache.exists():
        with np.load(cache) as z:
            if str(z["teacher_sha256"]) == sha and len(z["logits"]) == len(x):
                return z["logits"]
    model, _, _ = load_checkpoint(run.checkpoint("teacher"))
    logits = predict(model, x)
    np.savez(cache, logits=logits, teacher_sha256=sha)
    return logits


def run_distill(cfg: RunConfig, run: RunDir, *, on_step=None) -> dict:
    """Train teacher (unless reusable), KD student and scratch student; write `distill/summary.json`."""
    run.distill.mkdir(parents=True, exist_ok=True)
    splits = load_splits(cfg)
    xs = {k: splits.normalize(getattr(splits, f"{k}_x")) for k in ("train", "val", "test")}
    summary: dict = {
        "data": {
            "root": str(cfg.data.root),
            "train": len(splits.train_y),
            "val": len(splits.val_y),
            "test": len(splits.test_y),
        }
    }
    summary["teacher"] = _reusable_teacher(run, cfg) or _train_one(
        "teacher", cfg.teacher, splits, xs, run, cfg, on_step=on_step
    )
    logits = _teacher_logits(run, xs["train"])
    summary["student_kd"] = _train_one(
        "student_kd",
        cfg.student,
        splits,
        xs,
        run,
        cfg,
        alpha=cfg.distill.alpha,
        teacher_logits=logits,
        on_step=on_step,
    )
    if cfg.distill.scratch_control:
        summary["student_scratch"] = _train_one(
            "student_scratch", cfg.student, splits, xs, run, cfg, on_step=on_step
        )
    else:
        run.checkpoint("student_scratch").unlink(missing_ok=True)
    (run.distill / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
