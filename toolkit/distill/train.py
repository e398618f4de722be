"""The training loop: plain supervised or response-KD against cached teacher logits, on in-memory tensors."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from toolkit.distill.losses import kd_loss

__all__ = ["TrainSettings", "train_model", "predict", "accuracy"]

# on_step(done_batches, total_batches, metrics) lets the CLI draw a progress bar; library code never prints.
StepCallback = Callable[[int, int, dict], None]


@dataclass
class TrainSettings:
    epochs: int = 1
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    temperature: float = 4.0
    alpha: float = 0.0  # 0 = plain cross-entropy (no teacher)


@torch.no_grad()
def predict(model: torch.nn.Module, x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Logits of `model` (eval mode) on float32 NCHW `x`, as a numpy array."""
    model.eval()
    return np.concatenate(
        [model(torch.from_numpy(x[i : i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
    )


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(1) == y).mean())


def train_model(
    model: torch.nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    settings: TrainSettings,
    *,
    teacher_logits: np.ndarray | None = None,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    metrics_path: str | Path | None = None,
    on_step: StepCallback | None = None,
) -> list[dict]:
    """Train in place with AdamW + one-cycle LR; KD loss when `teacher_logits` (aligned with `x`) is given.

    Returns one metrics dict per epoch (also appended to `metrics_path` as JSON lines).
    """
    if teacher_logits is not None and len(teacher_logits) != len(x):
        raise ValueError(f"teacher_logits has {len(teacher_logits)} rows for {len(x)} training images")
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    tt = torch.from_numpy(teacher_logits) if teacher_logits is not None else None
    steps = (len(x) + settings.batch_size - 1) // settings.batch_size
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr, total_steps=settings.epochs * steps)
    history = []
    for epoch in range(settings.epochs):
        model.train()
        t0, total_loss, correct = time.perf_counter(), 0.0, 0
        order = torch.randperm(len(x), generator=gen)
        for b in range(steps):
            idx = order[b * settings.batch_size : (b + 1) * settings.batch_size]
            logits = model(xt[idx])
            if tt is None:
                loss = F.cross_entropy(logits, yt[idx])
            else:
                loss = kd_loss(
                    logits, tt[idx], yt[idx], temperature=settings.temperature, alpha=settings.alpha
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_value = loss.item()
            total_loss += loss_value * len(idx)
            correct += int((logits.argmax(1) == yt[idx]).sum())
            if on_step is not None:
                on_step(
                    epoch * steps + b + 1, settings.epochs * steps, {"epoch": epoch + 1, "loss": loss_value}
                )
        row = {
            "epoch": epoch + 1,
            "loss": total_loss / len(x),
            "train_accuracy": correct / len(x),
            "seconds": time.perf_counter() - t0,
        }
        if val is not None:
            row["val_accuracy"] = accuracy(predict(model, val[0]), val[1])
        history.append(row)
        if metrics_path is not None:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(row) + "\n")
    return history
