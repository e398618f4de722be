"""The distillation service behind `edgekd distill`: the teachers (`teachers.py`) and their cached targets
(`targets.py`), then per seed the KD student and the scratch control (`fit.py`), and the run's summary."""

from __future__ import annotations

import numpy as np

from toolkit.config import RunConfig
from toolkit.distill.context import _Ctx
from toolkit.distill.fit import _train
from toolkit.distill.targets import _teacher_targets
from toolkit.distill.teachers import _get_teacher, teacher_names
from toolkit.rundir import RunDir
from toolkit.rundir.summary import write_summary

__all__ = ["distill", "validation_warnings"]


def distill(
    cfg: RunConfig, run: RunDir, *, on_step=None, resume: bool = False, teachers_only: bool = False
) -> dict:
    """Teachers (trained, reused or loaded), then per seed the KD and scratch students; summary.json."""
    from toolkit.distill.train import Teacher

    run.distill.mkdir(parents=True, exist_ok=True)
    ctx = _Ctx(cfg, run, on_step, resume)
    s = ctx.splits
    summary: dict = {
        "data": {
            "kind": cfg.data.kind,
            "root": str(cfg.data.root or getattr(cfg.data.options, "factory", cfg.data.kind)),
            "train": len(s.train_y),
            "val": len(s.val_y),
            "test": len(s.test_y),
            "classes": list(s.labels),
        },
        "device": ctx.device,
        "world_size": ctx.world,
    }
    teachers = []
    for name, tcfg in zip(teacher_names(cfg), cfg.teachers, strict=True):
        info, model = _get_teacher(ctx, name, tcfg)
        summary[name] = dict(info, weight=tcfg.weight)
        teachers.append(Teacher(model=model, weight=tcfg.weight, name=name))
    if not teachers_only:
        _teacher_targets(ctx, teachers, summary)
        _students(ctx, teachers, summary)
    if ctx.rank == 0:
        write_summary(run.summary, summary)
    return summary


def _students(ctx: _Ctx, teachers: list, summary: dict) -> None:
    """Per seed the KD student and, with the scratch control, the same student without a teacher."""
    cfg, seeds = ctx.cfg, ctx.cfg.student_seeds
    for i, seed in enumerate(seeds):
        suffix = "" if i == 0 else f"_seed{seed}"
        summary[f"student_kd{suffix}"], _ = _train(
            ctx, f"student_kd{suffix}", cfg.student, seed=seed, methods=tuple(cfg.distill.methods),
            teachers=teachers,
        )  # fmt: skip
        if cfg.distill.scratch_control:
            name = f"student_scratch{suffix}"
            summary[name], _ = _train(ctx, name, cfg.student, seed=seed)
    if not cfg.distill.scratch_control and ctx.rank == 0:
        ctx.run.checkpoint("student_scratch").unlink(missing_ok=True)
    if cfg.distill.scratch_control:
        summary["kd_vs_scratch"] = _kd_vs_scratch(summary, seeds)
        summary["warnings"] = validation_warnings(summary, teacher_names(cfg))


def validation_warnings(summary: dict, teachers: list[str]) -> list[str]:
    """Validation-split warnings: a teacher not better than the scratch student, KD below scratch."""
    scratch = summary["student_scratch"]["val_accuracy"]
    out = [
        f"{name} scores {100 * summary[name]['val_accuracy']:.2f} % on validation, not better than the "
        f"student trained from scratch ({100 * scratch:.2f} %): distilling from it can make the student worse"
        for name in teachers
        if summary[name].get("val_accuracy") is not None and summary[name]["val_accuracy"] <= scratch
    ]
    kd = summary["student_kd"]["val_accuracy"]
    if kd < scratch:
        out.append(
            f"the KD student scores {100 * kd:.2f} % on validation, below the scratch control "
            f"({100 * scratch:.2f} %): ship the scratch student or change the teacher or settings"
        )
    return out


def _kd_vs_scratch(summary: dict, seeds: list[int]) -> dict:
    """Per-seed test accuracy of the KD and scratch students, their means and the difference in points."""
    rows = []
    for i, seed in enumerate(seeds):
        suffix = "" if i == 0 else f"_seed{seed}"
        rows.append(
            {
                "seed": seed,
                "student_kd": summary[f"student_kd{suffix}"]["test_accuracy"],
                "student_scratch": summary[f"student_scratch{suffix}"]["test_accuracy"],
            }
        )
    kd = float(np.mean([r["student_kd"] for r in rows]))
    scratch = float(np.mean([r["student_scratch"] for r in rows]))
    return {
        "per_seed": rows,
        "mean_kd": kd,
        "mean_scratch": scratch,
        "delta_points": round(100 * (kd - scratch), 3),
        "kd_wins": sum(r["student_kd"] > r["student_scratch"] for r in rows),
    }
