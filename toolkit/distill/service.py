"""The distillation service behind `edgekd distill`: the teachers (`teachers.py`) and their cached targets
(`targets.py`), then per seed the KD student and the scratch control (`fit.py`), and the run's summary."""

from __future__ import annotations

import numpy as np
from pydantic import TypeAdapter, ValidationError

from toolkit.config import RunConfig, first_error
from toolkit.distill.context import _Ctx
from toolkit.distill.fit import _train
from toolkit.distill.targets import _teacher_targets
from toolkit.distill.teachers import _get_teacher, teacher_names
from toolkit.errors import InputError
from toolkit.rundir import RunDir
from toolkit.rundir.summary import (
    SUMMARY_VERSION,
    DataSizes,
    DistillSummary,
    KdVsScratch,
    ModelSummary,
    SeedResult,
    write_summary,
)

__all__ = ["distill", "validation_warnings"]

_MODELS = TypeAdapter(dict[str, ModelSummary])


def distill(
    cfg: RunConfig, run: RunDir, *, on_step=None, resume: bool = False, teachers_only: bool = False
) -> DistillSummary:
    """Teachers (trained, reused or loaded), then per seed the KD and scratch students; summary.json."""
    from toolkit.distill.train import Teacher

    run.distill.mkdir(parents=True, exist_ok=True)
    ctx = _Ctx(cfg, run, on_step, resume)
    entries: dict[str, dict] = {}  # each model's summary entry, as the training code builds it
    teachers = []
    for name, tcfg in zip(teacher_names(cfg), cfg.teachers, strict=True):
        info, model = _get_teacher(ctx, name, tcfg)
        entries[name] = dict(info, weight=tcfg.weight)
        teachers.append(Teacher(model=model, weight=tcfg.weight, name=name))
    if not teachers_only:
        _teacher_targets(ctx, teachers, entries)
        _students(ctx, teachers, entries)
    summary = _summary(ctx, entries, compare=not teachers_only and cfg.distill.scratch_control)
    if ctx.rank == 0:
        write_summary(run.summary, summary)
    return summary


def _students(ctx: _Ctx, teachers: list, entries: dict[str, dict]) -> None:
    """Per seed the KD student and, with the scratch control, the same student without a teacher."""
    cfg, seeds = ctx.cfg, ctx.cfg.student_seeds
    for i, seed in enumerate(seeds):
        suffix = "" if i == 0 else f"_seed{seed}"
        entries[f"student_kd{suffix}"], _ = _train(
            ctx, f"student_kd{suffix}", cfg.student, seed=seed, methods=tuple(cfg.distill.methods),
            teachers=teachers,
        )  # fmt: skip
        if cfg.distill.scratch_control:
            name = f"student_scratch{suffix}"
            entries[name], _ = _train(ctx, name, cfg.student, seed=seed)
    if not cfg.distill.scratch_control and ctx.rank == 0:
        ctx.run.checkpoint("student_scratch").unlink(missing_ok=True)


def _label_budget(splits) -> dict:
    """The data's label-budget fields, set only when a budget kept some labels."""
    if splits.labeled is None:
        return {}
    pool = len(splits.pool_x) if splits.pool_x is not None else 0
    return dict(
        labeled=len(splits.train_y),
        unlabeled=pool,
        label_budget=splits.labeled.budget,
        labeled_rows_sha256=splits.labeled.sha256,
    )


def _summary(ctx: _Ctx, entries: dict[str, dict], *, compare: bool) -> DistillSummary:
    """The typed summary: the data's sizes, each model's entry and, with the scratch control (`compare`),
    KD vs scratch per seed and the validation warnings."""
    cfg, s = ctx.cfg, ctx.splits
    try:
        models = _MODELS.validate_python(entries)
    except ValidationError as e:  # a writer bug: say which model and field
        raise InputError(f"{ctx.run.summary}: {first_error(e)}") from None
    data = DataSizes(
        kind=cfg.data.kind,
        root=str(cfg.data.root or getattr(cfg.data.options, "factory", cfg.data.kind)),
        train=len(s.train_y),
        val=len(s.val_y),
        test=len(s.test_y),
        classes=list(s.labels),
        **_label_budget(s),
    )
    tail = {}
    if compare:
        tail = {
            "kd_vs_scratch": _kd_vs_scratch(models, cfg.student_seeds),
            "warnings": validation_warnings(models, teacher_names(cfg)),
        }
    return DistillSummary(
        schema_version=SUMMARY_VERSION,
        data=data,
        device=ctx.device,
        world_size=ctx.world,
        models=models,
        **tail,
    )


def validation_warnings(models: dict[str, ModelSummary], teachers: list[str]) -> list[str]:
    """Validation-split warnings: a teacher not better than the scratch student, KD below scratch."""
    scratch = models["student_scratch"].val_accuracy
    out = [
        f"{name} scores {100 * val:.2f} % on validation, not better than the student trained from scratch "
        f"({100 * scratch:.2f} %): distilling from it can make the student worse"
        for name in teachers
        if (val := models[name].val_accuracy) is not None and val <= scratch
    ]
    kd = models["student_kd"].val_accuracy
    if kd < scratch:
        out.append(
            f"the KD student scores {100 * kd:.2f} % on validation, below the scratch control "
            f"({100 * scratch:.2f} %): ship the scratch student or change the teacher or settings"
        )
    return out


def _kd_vs_scratch(models: dict[str, ModelSummary], seeds: list[int]) -> KdVsScratch:
    """Per-seed test accuracy of the KD and scratch students, their means and the difference in points."""
    rows = []
    for i, seed in enumerate(seeds):
        suffix = "" if i == 0 else f"_seed{seed}"
        kd, scratch = models[f"student_kd{suffix}"], models[f"student_scratch{suffix}"]
        rows.append(SeedResult(seed=seed, student_kd=kd.test_accuracy, student_scratch=scratch.test_accuracy))
    kd = float(np.mean([r.student_kd for r in rows]))
    scratch = float(np.mean([r.student_scratch for r in rows]))
    return KdVsScratch(
        per_seed=rows,
        mean_kd=kd,
        mean_scratch=scratch,
        delta_points=round(100 * (kd - scratch), 3),
        kd_wins=sum(r.student_kd > r.student_scratch for r in rows),
    )
