"""The run's teachers: named, loaded from their source, reused where a matching trained one is saved, or
trained."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from toolkit.config import RunConfig, TeacherConfig, TrainConfig
from toolkit.distill.checkpoints import load_checkpoint, load_source, read_checkpoint
from toolkit.distill.context import _Ctx, _save
from toolkit.distill.fit import _evaluate, _spec, _train

__all__ = ["teacher_names"]


def teacher_names(cfg: RunConfig) -> list[str]:
    """`teacher` for the first (the baseline every report compares against), then teacher_2, teacher_3, …"""
    return ["teacher"] + [f"teacher_{i + 1}" for i in range(1, len(cfg.teachers))]


def _reusable_teacher(ctx: _Ctx, name: str, tcfg: TeacherConfig) -> dict | None:
    """The saved teacher's info if it was trained with exactly this teacher, data and seed config."""
    path = ctx.run.checkpoint(name)
    if not path.exists():
        return None
    # Only the metadata is compared: no need to build the model and load its weights here.
    ckpt = read_checkpoint(path)
    same = (
        ckpt.get("source") is None
        and ckpt["train"] == _as_train_config(tcfg).model_dump(mode="json")
        and ckpt["seed"] == ctx.cfg.seed
        and ckpt["data"] == ctx.cfg.data.model_dump(mode="json")
    )
    return dict(ckpt["info"], reused=True) if same else None


def _get_teacher(ctx: _Ctx, name: str, tcfg: TeacherConfig) -> tuple[dict, object]:
    """Load a teacher from its source, reuse a matching trained one, or train it."""
    if tcfg.source is not None:
        from toolkit.models import count_macs, count_params

        src = tcfg.source
        source = src.to_dict()
        spec = _spec("loaded", {}, ctx.splits)
        model, described = load_source(source, spec)
        spec.arch = f"{described['kind']}:{src.arch or src.factory or Path(src.path or '').name}"
        # The logits cache key: the file's hash, or the source itself when there is no file.
        key = (
            described.get("sha256") or hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()
        )
        info = {
            "arch": spec.arch,
            "source": described,
            "source_sha256": key,
            "params": count_params(model),
            "macs": count_macs(model, spec.input_shape),
            "loaded": True,
            **_evaluate(model, ctx.xs, ctx.splits, "cpu"),
        }
        _save(ctx, name, {"spec": spec.to_dict(), "source": source, "train": None, "info": info})
        return info, model
    info = _reusable_teacher(ctx, name, tcfg)
    if info is not None:
        model, _, _ = load_checkpoint(ctx.run.checkpoint(name))
        return info, model
    return _train(ctx, name, _as_train_config(tcfg), seed=ctx.cfg.seed)


def _as_train_config(tcfg: TeacherConfig) -> TrainConfig:
    """The training part of a teacher's config (its ensemble weight does not change its weights)."""
    return TrainConfig.model_validate(tcfg.model_dump(exclude={"source", "weight"}))
