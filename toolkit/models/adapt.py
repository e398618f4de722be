"""A teacher with its own preprocessing: the student's input mapped to the teacher's size and normalization.

The adapter is part of the teacher module, so cached logits, online targets, parity and the exported
teacher files all take the bundle's one input (the student's preprocessing) and stay comparable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TeacherInput"]


class TeacherInput(nn.Module):
    """`model` fed (x * std_in + mean_in - mean) / std, resized (bilinear) to `size` [H, W] when given."""

    def __init__(
        self,
        model: nn.Module,
        *,
        mean_in: Sequence[float],
        std_in: Sequence[float],
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        size: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.size = tuple(size) if size else None
        # One affine map per channel: student-normalized input -> x / 255 -> teacher-normalized input.
        mean, std = mean or mean_in, std or std_in
        scale = torch.tensor(std_in, dtype=torch.float32) / torch.tensor(std, dtype=torch.float32)
        shift = (
            torch.tensor(mean_in, dtype=torch.float32) - torch.tensor(mean, dtype=torch.float32)
        ) / torch.tensor(std, dtype=torch.float32)
        self.register_buffer("scale", scale.reshape(1, -1, 1, 1), persistent=False)
        self.register_buffer("shift", shift.reshape(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.scale + self.shift
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=False)
        return self.model(x)
