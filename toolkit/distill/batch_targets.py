"""Where each batch's teacher targets come from: none, logits cached once on the training images, logits
on stored augmented views, or a teacher forward on every batch ("online": random augmentation or a method
that taps features)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from toolkit.distill.losses import FeatureTap, ensemble_logits
from toolkit.distill.views import SoftTargets
from toolkit.errors import InputError
from toolkit.extensions import DISTILL_METHODS

if TYPE_CHECKING:
    from toolkit.distill.train import TrainSettings

__all__ = ["Teacher", "Targets", "TargetFn", "TARGETS", "teacher_mode", "check_teachers"]


@dataclass
class Teacher:
    """One teacher: its module (for online targets) and/or its logits cached on the training images (or
    on their stored views)."""

    model: nn.Module | None = None
    logits: np.ndarray | None = None
    view_logits: SoftTargets | None = None
    weight: float = 1.0
    name: str = "teacher"


@dataclass
class Targets:
    """A batch's teacher targets: the ensemble logits, and the first teacher's tapped features by method."""

    logits: torch.Tensor | None = None
    features: dict[str, torch.Tensor] = field(default_factory=dict)


# (the batch's images on the device, their rows in the training set, their stored views or None) -> targets
TargetFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], Targets]


def teacher_mode(settings: TrainSettings, teachers: Sequence[Teacher]) -> str:
    """ "none", "cached" (logits computed once), "views" (logits on stored views, computed once) or
    "online" (teacher forward per batch: random augmentation, or feature KD, on stored views too)."""
    if not teachers or not settings.methods:
        return "none"
    if settings.augment or any(DISTILL_METHODS.get(m).taps_features for m in settings.methods):
        return "online"
    return "views" if settings.views is not None else "cached"


def _no_targets(settings: TrainSettings, teachers, device, taps) -> TargetFn:
    return lambda xb, idx, view: Targets()


def _cached_targets(settings: TrainSettings, teachers, device, taps) -> TargetFn:
    # Combine the teachers once: the soft targets do not change between epochs.
    logits = [torch.from_numpy(t.logits) for t in teachers]
    table = ensemble_logits(logits, [t.weight for t in teachers], temperature=settings.temperature)
    return lambda xb, idx, view: Targets(table[idx].to(device, non_blocking=True))


def _view_targets(settings: TrainSettings, teachers, device, taps) -> TargetFn:
    weights = [t.weight for t in teachers]

    def targets(xb: torch.Tensor, idx: torch.Tensor, view: torch.Tensor | None) -> Targets:
        outs = [t.view_logits.logits(idx, view) for t in teachers]
        logits = ensemble_logits(outs, weights, temperature=settings.temperature)
        return Targets(logits.to(device, non_blocking=True))

    return targets


def _online_targets(settings: TrainSettings, teachers, device, taps: dict[str, FeatureTap]) -> TargetFn:
    models = [t.model.to(device).eval() for t in teachers]
    weights = [t.weight for t in teachers]

    def targets(xb: torch.Tensor, idx: torch.Tensor, view: torch.Tensor | None) -> Targets:
        with torch.no_grad():
            outs = [m(xb).float() for m in models]
        logits = ensemble_logits(outs, weights, temperature=settings.temperature)
        return Targets(logits, {name: tap.output for name, tap in taps.items()})

    return targets


# teacher_mode -> builder(settings, teachers, device, teacher taps by method) of the per-batch targets
TARGETS = {"none": _no_targets, "cached": _cached_targets, "views": _view_targets, "online": _online_targets}


def check_teachers(mode: str, settings: TrainSettings, teachers: Sequence[Teacher], n: int) -> None:
    if settings.methods and not teachers:
        raise InputError(f"methods {list(settings.methods)} need a teacher")
    for t in teachers:
        if (problem := _teacher_problem(mode, t, n)) is not None:
            raise InputError(f"{t.name}: {problem}")


def _teacher_problem(mode: str, t: Teacher, n: int) -> str | None:
    """What teacher `t` lacks for training in `mode` on `n` images, if anything."""
    if mode == "cached" and t.logits is None:
        return "cached-logit training needs its logits on the training images"
    if mode == "cached" and len(t.logits) != n:
        return f"{len(t.logits)} cached logit rows for {n} training images"
    if mode == "views" and (t.view_logits is None or len(t.view_logits.values) != n):
        return f"stored-view training needs logits on every view of {n} images"
    if mode == "online" and t.model is None:
        return "online targets (augmentation or hint) need the teacher model"
    return None
