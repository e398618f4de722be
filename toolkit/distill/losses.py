"""Distillation losses, as `nn.Module`s on logits with keyword-only hyperparameters."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.registry import Registry

__all__ = ["LOSSES", "KDLoss", "kd_loss"]

LOSSES = Registry("loss")


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
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
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
