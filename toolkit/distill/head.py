"""A frozen-encoder teacher (`model.frozen_encoder`, e.g. MiniLM): sentence embeddings computed once per
(encoder, data) and cached on disk, then only the linear head trains on them, full batch.

Encoding is the slow part on a CPU (MiniLM: ~58 s for 10 k texts of 64 tokens on 2 cores); the head
trains in a second, and the teacher's logits on the training set come from the cached embeddings.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.files import atomic_path, user_cache
from toolkit.errors import InputError

__all__ = ["EmbeddingCache", "default_cache_dir", "sentence_embeddings", "fit_head", "head_logits"]

HEAD_STEPS = 300  # full-batch Adam steps; the step with the best validation accuracy is kept
ENCODE_BATCH = 64


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/edgekd/embeddings (shared by every run on the machine)."""
    return user_cache("embeddings")


@dataclass
class EmbeddingCache:
    """Where one split's embeddings were found or computed, and how long computing took (None: cached)."""

    path: Path
    seconds: float | None


EMBEDDINGS_VERSION = 1  # bump when forward_features (the pooling) changes: older cache files stop matching


def _encoder_key(model: nn.Module) -> str:
    """The embeddings' identity: every weight of the encoder, the model class, its padding id and the
    pooling version (~0.2 s for MiniLM's 90 MB)."""
    h = hashlib.sha256(f"{type(model).__name__}:{model.pad_id}:{EMBEDDINGS_VERSION}".encode())
    for name, tensor in model.encoder.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def sentence_embeddings(
    model: nn.Module, ids: np.ndarray, cache_dir: Path, *, device: str = "cpu"
) -> tuple[np.ndarray, EmbeddingCache]:
    """`model.forward_features` of every row of `ids`, read from `cache_dir` when computed before."""
    key = hashlib.sha256(ids.tobytes() + str(ids.shape).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"{_encoder_key(model)}-{key}.npy"
    if path.is_file():
        return np.load(path), EmbeddingCache(path, None)
    t0 = time.perf_counter()
    model.eval().to(device)
    rows = [
        model.forward_features(torch.from_numpy(ids[i : i + ENCODE_BATCH]).to(device)).float().cpu()
        for i in range(0, len(ids), ENCODE_BATCH)
    ]
    model.to("cpu")
    emb = torch.cat(rows).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, emb)
    return emb, EmbeddingCache(path, round(time.perf_counter() - t0, 1))


def fit_head(
    head: nn.Linear,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    *,
    lr: float,
    weight_decay: float,
    seed: int,
) -> list[dict]:
    """Full-batch Adam on the embeddings for `HEAD_STEPS` steps; the best validation step's weights are
    kept. Returns one history row (as `train_model` returns per epoch)."""
    torch.manual_seed(seed)
    head.reset_parameters()
    x, y = torch.from_numpy(train[0]), torch.from_numpy(train[1])
    xv, yv = torch.from_numpy(val[0]), torch.from_numpy(val[1])
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    t0, best, state, best_step, loss = time.perf_counter(), -1.0, None, 0, None
    for step in range(HEAD_STEPS):
        opt.zero_grad()
        loss = F.cross_entropy(head(x), y)
        loss.backward()
        opt.step()
        with torch.no_grad():
            acc = float((head(xv).argmax(1) == yv).float().mean())
        if acc > best:
            best, best_step, state = acc, step + 1, {k: v.clone() for k, v in head.state_dict().items()}
    if state is None:
        raise InputError(f"no validation accuracy to choose the head by ({len(yv)} validation examples)")
    head.load_state_dict(state)
    with torch.no_grad():
        train_acc = float((head(x).argmax(1) == y).float().mean())
    return [
        {
            "epoch": 1,
            "loss": loss.item(),
            "train_accuracy": train_acc,
            "val_accuracy": best,
            "best_step": best_step,
            "seconds": round(time.perf_counter() - t0, 3),
            "teacher_targets": None,
        }
    ]


@torch.no_grad()
def head_logits(head: nn.Module, embeddings: np.ndarray) -> np.ndarray:
    """The classifier's logits from cached embeddings (what the full model gives, without re-encoding)."""
    return head(torch.from_numpy(embeddings)).numpy()
