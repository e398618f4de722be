"""Plain VGG-style CNN family: conv-BN-ReLU stages with max-pooling, then an MLP head.

Serves as the default teacher (`cnn_teacher`, ~1.5 M params) and student (`cnn_student`, ~24 k params).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from toolkit.errors import InputError
from toolkit.models.registry import MODELS

__all__ = ["ConvNet", "cnn_teacher", "cnn_student"]


def _stage(cin: int, cout: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)]
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class ConvNet(nn.Module):
    """Stages of `depth` 3x3 convs (BN, ReLU) each halving the resolution, then flatten or GAP and an MLP."""

    def __init__(
        self,
        *,
        widths: Sequence[int] = (16, 32, 64),
        depth: int = 1,
        hidden: int = 0,
        pool: str = "avg",
        in_chans: int = 1,
        num_classes: int = 10,
        input_size: int = 28,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if pool not in ("avg", "flatten"):
            raise InputError(f"pool must be 'avg' or 'flatten', got {pool!r}")
        chans = [in_chans, *widths]
        self.features = nn.Sequential(*[_stage(chans[i], chans[i + 1], depth) for i in range(len(widths))])
        side = input_size // 2 ** len(widths)
        self.num_features = widths[-1] * (side * side if pool == "flatten" else 1)
        self.pool = (
            nn.Flatten(1) if pool == "flatten" else nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        )
        head: list[nn.Module] = []
        if hidden:
            head += [nn.Linear(self.num_features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        head.append(nn.Linear(hidden or self.num_features, num_classes))
        self.head = nn.Sequential(*head)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _create_convnet(variant: str, **kwargs) -> ConvNet:
    return ConvNet(**kwargs)


@MODELS.register
def cnn_teacher(**kwargs) -> ConvNet:
    """~1.55 M-param teacher: 64-128-256 convs, flattened 3x3x256 features, 512-wide hidden layer."""
    defaults = dict(widths=(64, 128, 256), depth=1, hidden=512, pool="flatten", dropout=0.2)
    return _create_convnet("cnn_teacher", **dict(defaults, **kwargs))


@MODELS.register
def cnn_student(**kwargs) -> ConvNet:
    """~24 k-param student: 16-32-64 convs, global average pooling, linear classifier."""
    defaults = dict(widths=(16, 32, 64), depth=1, hidden=0, pool="avg")
    return _create_convnet("cnn_student", **dict(defaults, **kwargs))
