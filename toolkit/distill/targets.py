"""The teachers' targets on the training images, cached per teacher: plain logits (`{name}_logits.npz`) or
soft targets on the run's stored views (`{name}_views.npz`)."""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np

from benchmarks.files import atomic_path, sha256_file
from toolkit.config import RunConfig
from toolkit.distill.context import _Ctx
from toolkit.rundir import RunDir

__all__ = ["cached_train_logits"]


def _view_spec(cfg: RunConfig):
    """The run's stored views (one draw, seeded by the run, shared by every student and seed), or None.
    Text: token masks with the tokenizer's [MASK] (else [UNK]), never on padding, [CLS] or [SEP]."""
    from toolkit.distill.views import ViewSpec

    v = cfg.distill.views
    if v is None:
        return None
    if not cfg.data.is_text:
        return ViewSpec(**v.model_dump(exclude={"mask"}), seed=cfg.seed)
    from benchmarks.text import load_tokenizer

    tok = load_tokenizer(cfg.data.options.tokenizer, cfg.data.options.seq_len)
    ids = {t: tok.token_to_id(t) for t in ("[MASK]", "[UNK]", "[PAD]", "[CLS]", "[SEP]")}
    keep = tuple(sorted({i for t, i in ids.items() if t in ("[PAD]", "[CLS]", "[SEP]") and i is not None}))
    mask_id = ids["[MASK]"] if ids["[MASK]"] is not None else ids["[UNK]"]
    if mask_id is None:
        from toolkit.errors import ConfigError

        raise ConfigError(f"{cfg.data.options.tokenizer}: no [MASK] or [UNK] token to mask views with")
    return ViewSpec(
        count=v.count,
        top_k=v.top_k,
        seed=cfg.seed,
        mask=v.mask,
        mask_id=mask_id,
        keep_ids=keep,
        shift=0,
        flip=False,
    )


def _teacher_targets(ctx: _Ctx, teachers: list, summary: dict) -> None:
    """Each teacher's logits on the training images (or on their stored views), when training uses them."""
    from toolkit.distill.train import TrainSettings, teacher_mode

    cfg = ctx.cfg
    spec = _view_spec(cfg)
    settings = TrainSettings(methods=tuple(cfg.distill.methods), augment=cfg.distill.augment, views=spec)
    mode = teacher_mode(settings, teachers)
    for t in teachers:
        if mode == "cached":
            t.logits = _teacher_logits(ctx, t.name, t.model, summary[t.name])
        elif mode == "views":
            t.view_logits = _teacher_view_logits(ctx, t.name, t.model, summary[t.name], spec)
            summary[t.name]["soft_target_bytes_per_image"] = t.view_logits.bytes_per_image


def _logits_key(ctx: _Ctx, name: str, info: dict, *extra) -> str:
    """The teacher (its file or checkpoint, its config with any input adapter) and the images it scored."""
    parts = [info.get("source_sha256") or sha256_file(ctx.run.checkpoint(name)), ctx.cfg.seed]
    parts += [[t.model_dump(mode="json") for t in ctx.cfg.teachers], ctx.cfg.data.model_dump(mode="json")]
    return hashlib.sha256(json.dumps([*parts, *extra], sort_keys=True, default=str).encode()).hexdigest()


def _teacher_logits(ctx: _Ctx, name: str, model, info: dict) -> np.ndarray:
    """Teacher logits on the (augmentation-free) training images, computed once per teacher."""
    from toolkit.distill.train import predict

    x = ctx.xs["train"]
    key = _logits_key(ctx, name, info)
    cache = ctx.run.teacher_logits(name)
    if cache.exists():
        with np.load(cache) as z:
            if str(z["teacher_sha256"]) == key and len(z["logits"]) == len(x):
                return z["logits"]
    if getattr(model, "frozen_encoder", False):  # from its cached embeddings: no second encoding pass
        from toolkit.distill.head import default_cache_dir, head_logits, sentence_embeddings

        logits = head_logits(
            model.head, sentence_embeddings(model, x, default_cache_dir(), device=ctx.device)[0]
        )
    else:
        logits = predict(model, x)
    if ctx.rank == 0:
        with atomic_path(cache) as tmp:
            np.savez(tmp, logits=logits, teacher_sha256=key)
    return logits


def cached_train_logits(run: RunDir, name: str) -> np.ndarray:
    """A teacher's (N, C) logits on the training rows as distill cached them: `{name}_logits.npz`, or view 0
    (the example itself) of `{name}_views.npz` where the KD run replayed stored views."""
    import torch

    from toolkit.distill.views import read_soft_targets

    plain, views = run.teacher_logits(name), run.teacher_views(name)
    if plain.exists():
        with np.load(plain) as z:
            return z["logits"]
    if not views.exists():
        from toolkit.errors import RunDirError

        raise RunDirError(f"{plain}: not found (nor {views.name}): no cached teacher logits")
    soft, _ = read_soft_targets(views)
    n = len(soft.values)
    return soft.logits(torch.arange(n), torch.zeros(n, dtype=torch.long)).numpy()


def _teacher_view_logits(ctx: _Ctx, name: str, model, info: dict, spec):
    """Teacher logits on every stored view of the training images (`SoftTargets`), computed once per
    teacher and view spec; the seconds it took go into the teacher's summary entry."""
    from toolkit.distill.views import SoftTargets, draw_views, read_soft_targets, teacher_view_logits

    x = ctx.xs["train"]
    key = _logits_key(ctx, name, info, spec.to_dict())
    cache = ctx.run.teacher_views(name)
    if cache.exists():
        soft, stored = read_soft_targets(cache)
        if stored == key and len(soft.values) == len(x):
            return soft
    t0 = time.perf_counter()
    views = draw_views(len(x), spec, x.shape[-1])
    soft = SoftTargets.from_logits(teacher_view_logits(model, x, views, device=ctx.device), spec.top_k)
    info["view_logits_seconds"] = round(time.perf_counter() - t0, 1)
    if ctx.rank == 0:
        arrays = {k: v for k, v in (("indices", soft.indices), ("rest", soft.rest)) if v is not None}
        with atomic_path(cache) as tmp:
            np.savez(tmp, values=soft.values, classes=soft.classes, key=key, **arrays)
    return soft
