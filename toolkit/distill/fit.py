"""One model trained for `distill` (teacher, KD or scratch student): its spec and settings, the training (or
a frozen encoder's head fit), its metrics and checkpoint; a finished one is reused on `--resume`."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from toolkit.config import RunConfig, TrainConfig
from toolkit.data import DataSplits
from toolkit.distill.checkpoints import load_checkpoint
from toolkit.distill.context import _Ctx, _save
from toolkit.distill.targets import _view_spec

__all__: list[str] = []  # the service's internals: `toolkit.distill.service.distill` is the entry point


def _spec(arch: str, kwargs: dict, splits: DataSplits):
    from toolkit.models import ModelSpec

    kwargs = dict(kwargs)
    if kwargs.pop("prune_vocab", False):  # a text model's embedding rows for the training tokens only
        if not splits.is_text:
            from toolkit.errors import ConfigError

            raise ConfigError(f"{arch}: prune_vocab applies to text models (token ids), not images")
        kwargs["keep_ids"] = np.unique(np.asarray(splits.train_x)).tolist()
    if splits.is_text:  # the tokenizer's padding id and vocabulary, whichever tokenizer the data names
        kwargs.setdefault("pad_id", splits.tokens.pad_id)
        kwargs.setdefault("vocab_size", splits.vocab_size)
    return ModelSpec(
        arch=arch,
        kwargs=kwargs,
        input_shape=splits.input_shape,
        layout="NL" if splits.is_text else "NCHW",
        mean=splits.mean,
        std=splits.std,
        labels=splits.labels,
    )


def _evaluate(model, xs: dict, splits: DataSplits, device: str, val_accuracy: float | None = None) -> dict:
    """Test-split metrics, and validation accuracy unless training already measured it on these weights."""
    from toolkit.distill.evaluate import evaluate
    from toolkit.distill.train import accuracy, predict

    test = evaluate(predict(model.to(device), xs["test"], device=device), splits.test_y, labels=splits.labels)
    model.to("cpu")
    if val_accuracy is None:
        val_accuracy = accuracy(predict(model, xs["val"]), splits.val_y)
    return {
        "val_accuracy": val_accuracy,
        "test_accuracy": test["top1"],
        "test": test,
    }


def _settings(ctx: _Ctx, tcfg: TrainConfig, seed: int, methods: tuple[str, ...]):
    """The training settings of one model: its own config, the run's distillation options, the device."""
    from toolkit.distill.train import TrainSettings

    d = ctx.cfg.distill
    return TrainSettings(
        epochs=tcfg.epochs,
        batch_size=tcfg.batch_size,
        lr=tcfg.lr,
        weight_decay=tcfg.weight_decay,
        seed=seed,
        methods=methods,
        temperature=d.temperature,
        alpha=d.alpha,
        options={m: d.options(m) for m in methods},
        augment=d.augment if tcfg.augment is None else tcfg.augment,
        keep_best=tcfg.keep_best,
        views=_view_spec(ctx.cfg) if methods else None,  # the scratch control trains on the plain images
        device=ctx.device,
        amp=ctx.cfg.amp,
    )


def _train_info(ctx: _Ctx, spec, model, settings, history: list[dict], t0: float) -> dict:
    """A trained model's summary entry: size, training facts and its test (and validation) metrics."""
    from toolkit.models import count_macs, count_params

    methods, d = settings.methods, ctx.cfg.distill
    kept = next((i for i, h in enumerate(history) if h.get("kept")), None)  # keep_best: that epoch's weights
    last = history[kept if kept is not None else -1] if history else {}
    return {
        "arch": spec.arch,
        "params": count_params(model),
        "macs": count_macs(model, spec.input_shape),
        "epochs": settings.epochs,
        "seed": settings.seed,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "epoch_seconds": [h["seconds"] for h in history],
        "device": ctx.device,
        "world_size": ctx.world,
        "methods": list(methods),
        "teacher_targets": history[0]["teacher_targets"] if history else None,
        "temperature": d.temperature if methods else None,
        "alpha": d.alpha if "kd" in methods else None,
        "augment": settings.augment,
        "views": settings.views.to_dict() if settings.views is not None else None,
        **({"kept_epoch": kept + 1} if kept is not None else {}),
        # under a label budget, what it trained on: the labeled rows only (the pool is not used yet)
        **({"labeled_images": len(ctx.splits.train_y), "unlabeled_images": 0} if ctx.splits.labeled else {}),
        # the kept (or last) epoch's validation pass ran on these final weights: not repeated
        **_evaluate(model, ctx.xs, ctx.splits, ctx.device, last.get("val_accuracy")),
    }


def _train(
    ctx: _Ctx,
    name: str,
    tcfg: TrainConfig,
    *,
    seed: int,
    methods: tuple[str, ...] = (),
    teachers: list = (),
) -> tuple[dict, object]:
    """Train one model (teacher, KD or scratch student); save its checkpoint; return (info, model)."""
    import torch

    from toolkit.models import create_model

    fingerprint = _fingerprint(ctx.cfg, tcfg, seed, methods)
    if ctx.resume and (done := _finished(ctx, name, fingerprint)) is not None:
        return done  # trained to the end before the run was cut off: not trained or evaluated again
    spec = _spec(tcfg.arch, tcfg.kwargs, ctx.splits)
    settings = _settings(ctx, tcfg, seed, tuple(methods))
    torch.manual_seed(seed)  # same init for the KD and scratch students of a seed: only the loss differs
    model = create_model(spec)
    state = ctx.run.train_state(name)
    if not ctx.resume and ctx.rank == 0:
        state.unlink(missing_ok=True)
    on_step = ctx.on_step and (lambda done, total, m: ctx.on_step(name, done, total, m))
    t0 = time.perf_counter()
    if getattr(model, "frozen_encoder", False):
        history = _fit_frozen(ctx, model, settings)
    else:
        history = _train_model(ctx, name, model, settings, teachers, state, on_step)
    info = _train_info(ctx, spec, model, settings, history, t0)
    if history and "embeddings" in history[0]:
        info["embeddings"] = history[0]["embeddings"]
    ckpt = {
        "spec": spec.to_dict(),
        "train": tcfg.model_dump(mode="json"),
        "seed": seed,
        "data": ctx.cfg.data.model_dump(mode="json"),
        "fingerprint": fingerprint,
        "state_dict": model.state_dict(),
        "info": info,
    }
    _save(ctx, name, ckpt)
    return info, model


def _train_model(ctx: _Ctx, name: str, model, settings, teachers, state: Path, on_step) -> list[dict]:
    from toolkit.distill.train import train_model

    return train_model(
        model,
        ctx.xs["train"],
        ctx.splits.train_y,
        settings,
        teachers=teachers,
        val=(ctx.xs["val"], ctx.splits.val_y),
        state_path=state,
        resume=ctx.resume,
        metrics_path=ctx.run.metrics(name) if ctx.rank == 0 else None,
        on_step=on_step,
        workers=ctx.cfg.data.workers,
    )


def _fit_frozen(ctx: _Ctx, model, settings) -> list[dict]:
    """A frozen-encoder teacher: embeddings of train and val (cached), then its head fitted on them."""
    from toolkit.distill.head import default_cache_dir, fit_head, sentence_embeddings

    emb, took = {}, {}
    for split in ("train", "val"):
        emb[split], cache = sentence_embeddings(model, ctx.xs[split], default_cache_dir(), device=ctx.device)
        took[split] = {"path": str(cache.path), "seconds": cache.seconds}  # seconds None: read from cache
    history = fit_head(
        model.head,
        (emb["train"], ctx.splits.train_y),
        (emb["val"], ctx.splits.val_y),
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        seed=settings.seed,
    )
    history[0]["embeddings"] = took
    return history


def _fingerprint(cfg: RunConfig, tcfg: TrainConfig, seed: int, methods) -> str:
    """What a trained model depends on: its own settings, the distillation, the teachers, data and seed."""
    parts = {
        "train": tcfg.model_dump(mode="json"),
        "seed": seed,
        "methods": list(methods),
        "distill": cfg.distill.model_dump(mode="json") if methods else None,
        "teachers": [t.model_dump(mode="json") for t in cfg.teachers] if methods else None,
        "data": cfg.data.model_dump(mode="json"),
        "amp": cfg.amp,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _finished(ctx: _Ctx, name: str, fingerprint: str) -> tuple[dict, object] | None:
    """(info, model) of a checkpoint this run already finished with the same fingerprint, else None."""
    path = ctx.run.checkpoint(name)
    if not path.exists():
        return None
    model, _, ckpt = load_checkpoint(path)
    return (dict(ckpt["info"]), model) if ckpt.get("fingerprint") == fingerprint else None
