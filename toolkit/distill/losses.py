"""Distillation losses, as `nn.Module`s on logits with keyword-only hyperparameters, and the distillation
methods (`distill.methods`) whose loss terms training builds from them, each registered with its options."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from benchmarks.registry import Registry
from toolkit.errors import InputError
from toolkit.extensions import DistillMethod, register_method

if TYPE_CHECKING:
    from toolkit.distill.train import Teacher, TrainSettings

__all__ = [
    "LOSSES",
    "DKDOptions",
    "HintOptions",
    "KDLoss",
    "kd_loss",
    "DKDLoss",
    "dkd_loss",
    "HintLoss",
    "FeatureTap",
    "LossTerm",
    "Step",
    "ensemble_logits",
]

LOSSES = Registry("loss")


def ensemble_logits(
    teacher_logits: list[torch.Tensor], weights: list[float] | None = None, *, temperature: float = 4.0
) -> torch.Tensor:
    """Multi-teacher soft targets as logits: T * log(sum_i w_i * softmax(z_i / T)), weights normalized.

    Their softmax at temperature T is the weighted average of the teachers' soft targets, so `kd_loss`
    and `dkd_loss` take them unchanged (Hinton 2015 averages an ensemble's soft targets the same way).
    """
    if not teacher_logits:
        raise InputError("ensemble_logits needs at least one teacher")
    w = torch.tensor(weights if weights is not None else [1.0] * len(teacher_logits), dtype=torch.float64)
    if len(w) != len(teacher_logits) or (w < 0).any() or w.sum() <= 0:
        raise InputError(f"weights must be {len(teacher_logits)} non-negative numbers with a positive sum")
    if len(teacher_logits) == 1:
        return teacher_logits[0]
    w = (w / w.sum()).tolist()
    probs = sum(
        wi * F.softmax(z.double() / temperature, dim=1) for wi, z in zip(w, teacher_logits, strict=True)
    )
    return (temperature * probs.clamp_min(1e-30).log()).to(teacher_logits[0].dtype)


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float = 4.0,
    alpha: float = 0.9,
) -> torch.Tensor:
    """Hinton et al. 2015, "Distilling the Knowledge in a Neural Network":

    alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y), KL averaged over the batch.
    """
    if temperature <= 0:
        raise InputError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1], got {alpha}")
    hard = F.cross_entropy(student_logits, targets)
    if alpha == 0.0:
        return hard
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    # T^2 keeps the soft-target gradients on the same scale as the hard loss when T changes.
    soft = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temperature**2
    return alpha * soft + (1.0 - alpha) * hard


@LOSSES.register(name="kd")
class KDLoss(nn.Module):
    """Response-based KD (Hinton 2015); see `kd_loss` for the formula."""

    def __init__(self, *, temperature: float = 4.0, alpha: float = 0.9) -> None:
        super().__init__()
        self.temperature, self.alpha = temperature, alpha

    def forward(self, student_logits, teacher_logits, targets) -> torch.Tensor:
        return kd_loss(
            student_logits, teacher_logits, targets, temperature=self.temperature, alpha=self.alpha
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, alpha={self.alpha}"


def dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float = 4.0,
    alpha: float = 1.0,
    beta: float = 8.0,
) -> torch.Tensor:
    """Decoupled KD (Zhao et al. 2022, "Decoupled Knowledge Distillation"):

    alpha * TCKD + beta * NCKD, where TCKD = T^2 * KL over [p(target), 1 - p(target)] and
    NCKD = T^2 * KL over the non-target classes renormalized; both averaged over the batch.
    """
    if temperature <= 0:
        raise InputError(f"temperature must be > 0, got {temperature}")
    gt = F.one_hot(targets, student_logits.shape[1]).bool()
    p_s = F.softmax(student_logits / temperature, dim=1)
    p_t = F.softmax(teacher_logits / temperature, dim=1)
    # Binary (target vs rest) distributions; clamp keeps log() finite when a probability saturates.
    b_s = torch.stack([p_s[gt], 1 - p_s[gt]], dim=1).clamp_min(1e-12)
    b_t = torch.stack([p_t[gt], 1 - p_t[gt]], dim=1).clamp_min(1e-12)
    tckd = F.kl_div(b_s.log(), b_t, reduction="batchmean") * temperature**2
    # Non-target distributions: mask the target logit out before the softmax.
    masked = torch.finfo(student_logits.dtype).min
    log_q_s = F.log_softmax((student_logits / temperature).masked_fill(gt, masked), dim=1)
    q_t = F.softmax((teacher_logits / temperature).masked_fill(gt, masked), dim=1)
    nckd = F.kl_div(log_q_s.masked_fill(gt, 0.0), q_t, reduction="batchmean") * temperature**2
    return alpha * tckd + beta * nckd


@LOSSES.register(name="dkd")
class DKDLoss(nn.Module):
    """Decoupled KD (Zhao et al. 2022); see `dkd_loss` for the formula."""

    def __init__(self, *, temperature: float = 4.0, alpha: float = 1.0, beta: float = 8.0) -> None:
        super().__init__()
        self.temperature, self.alpha, self.beta = temperature, alpha, beta

    def forward(self, student_logits, teacher_logits, targets) -> torch.Tensor:
        return dkd_loss(
            student_logits,
            teacher_logits,
            targets,
            temperature=self.temperature,
            alpha=self.alpha,
            beta=self.beta,
        )


@LOSSES.register(name="hint")
class HintLoss(nn.Module):
    """FitNets hint (Romero et al. 2015): beta * MSE(adapter(student feature), teacher feature).

    The adapter is a learned 1x1 conv when channel counts differ (identity otherwise); a student map of
    another spatial size is resized to the teacher's bilinearly before the adapter.
    """

    def __init__(self, student_channels: int, teacher_channels: int, *, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = beta
        self.adapter: nn.Module = (
            nn.Identity()
            if student_channels == teacher_channels
            else nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=False)
        )

    def forward(self, student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
        if student_feature.shape[-2:] != teacher_feature.shape[-2:]:
            student_feature = F.interpolate(
                student_feature, size=teacher_feature.shape[-2:], mode="bilinear", align_corners=False
            )
        return self.beta * F.mse_loss(self.adapter(student_feature), teacher_feature)


class FeatureTap:
    """Keeps the output of one named submodule from the latest forward (a forward hook)."""

    def __init__(self, model: nn.Module, name: str) -> None:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            names = [n for n, _ in model.named_children()]
            raise InputError(
                f"{type(model).__name__} has no submodule {name!r} (top level: {names})"
            ) from None
        self.name, self.output = name, None
        self._handle = module.register_forward_hook(self._keep)

    def _keep(self, module, inputs, output) -> None:
        self.output = output

    def remove(self) -> None:
        self._handle.remove()


@dataclass
class Step:
    """One batch as a loss term sees it."""

    logits: torch.Tensor  # the student's, float32
    y: torch.Tensor
    teacher: torch.Tensor | None  # the teachers' ensemble logits (soft targets at the KD temperature)
    features: dict[str, torch.Tensor]  # each feature term's module output, by method name
    epoch: int  # 0-based


@dataclass
class LossTerm:
    """One method's part of the objective: `fn(step)` per batch, summed with the other methods' terms.

    `with_ce`: the term already holds the hard-label CE (KD weighs it 1 - alpha), so it is not added again.
    A feature term also has a trainable `module(student_feature, teacher_feature)`, run in the student's
    forward on the outputs of `layers` = (student submodule, first teacher's submodule).
    """

    fn: Callable[[Step], torch.Tensor]
    with_ce: bool = False
    module: nn.Module | None = None
    layers: tuple[str, str] | None = None


class DKDOptions(BaseModel):
    """`distill.dkd`: DKD's weights of the target-class and non-target-class parts, and its warm-up."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(1.0, ge=0)
    beta: float = Field(8.0, ge=0)
    warmup_epochs: int = Field(0, ge=0)  # DKD's weight ramps up linearly over these epochs, as in the paper


class HintOptions(BaseModel):
    """`distill.hint`: the tapped submodules (names as in `model.get_submodule()`) and the hint's weight."""

    model_config = ConfigDict(extra="forbid")

    student_layer: str = "features.1"
    teacher_layer: str = "features.1"
    beta: float = Field(1.0, ge=0)


def _kd_term(options: None, settings: TrainSettings, **_) -> LossTerm:
    loss = LOSSES.create("kd", temperature=settings.temperature, alpha=settings.alpha)
    return LossTerm(lambda step: loss(step.logits, step.teacher, step.y), with_ce=True)


def _dkd_term(options: DKDOptions, settings: TrainSettings, **_) -> LossTerm:
    loss = LOSSES.create("dkd", temperature=settings.temperature, alpha=options.alpha, beta=options.beta)

    def term(step: Step) -> torch.Tensor:
        # DKD's weight ramps up linearly over the warm-up epochs, as in the paper
        warmup = options.warmup_epochs
        weight = min(1.0, (step.epoch + 1) / warmup) if warmup else 1.0
        return weight * loss(step.logits, step.teacher, step.y)

    return LossTerm(term)


def _hint_term(
    options: HintOptions,
    settings: TrainSettings,
    *,
    model: nn.Module,
    teachers: Sequence[Teacher],
    x: np.ndarray,
) -> LossTerm:
    layers = (options.student_layer, options.teacher_layer)
    s_channels, t_channels = _probe_channels(model, teachers[0].model, layers, x)
    module = LOSSES.create(
        "hint", student_channels=s_channels, teacher_channels=t_channels, beta=options.beta
    )
    return LossTerm(lambda step: step.features["hint"].float(), module=module, layers=layers)


register_method(DistillMethod("kd", _kd_term))
register_method(DistillMethod("dkd", _dkd_term, options=DKDOptions))
register_method(DistillMethod("hint", _hint_term, options=HintOptions, taps_features=True))


def _probe_channels(
    model: nn.Module, teacher: nn.Module, layers: tuple[str, str], x: np.ndarray
) -> tuple[int, int]:
    """Channel counts of the student's and the teacher's tapped layers, from a forward on one image."""
    s_tap, t_tap = FeatureTap(model, layers[0]), FeatureTap(teacher, layers[1])
    try:
        with torch.no_grad():
            sample = torch.from_numpy(x[:1])
            was_training = model.training
            model.eval(), teacher.eval()
            model(sample), teacher(sample)
            model.train(was_training)
    finally:
        s_tap.remove(), t_tap.remove()
    return s_tap.output.shape[1], t_tap.output.shape[1]
