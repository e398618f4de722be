"""ResNet-style family of basic blocks (two 3x3 conv-BN plus identity or 1x1 shortcut), for small inputs.

A stride-1 3x3 stem and no max-pool, so 28x28 inputs go 28 -> 14 -> 7 over three stages. `features` holds
the stem (`features.0`) and one `nn.Sequential` of blocks per stage (`features.1`...).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from toolkit.errors import InputError
from toolkit.models.registry import MODELS

__all__ = ["BasicBlock", "ResNet", "resnet_student", "resnet_teacher"]


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU, conv3x3-BN, plus the shortcut (1x1 conv-BN when stride or width change), then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act2 = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(x + shortcut)


class ResNet(nn.Module):
    """3x3 stem, stages of `blocks[i]` basic blocks `widths[i]` wide (later ones halve), GAP, linear."""

    def __init__(
        self,
        *,
        widths: Sequence[int] = (16, 32, 64),
        blocks: Sequence[int] = (1, 1, 1),
        stem_width: int | None = None,
        in_chans: int = 1,
        num_classes: int = 10,
        input_size: int = 28,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(blocks) != len(widths):
            raise InputError(f"widths and blocks need the same length, got {len(widths)} and {len(blocks)}")
        cin = stem_width or widths[0]
        layers: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(in_chans, cin, 3, 1, 1, bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True)
            )
        ]
        # `input_size` is unused: global average pooling accepts any side.
        self.feature_info = [dict(module="features.0", num_chs=cin, reduction=1)]
        for i, (width, depth) in enumerate(zip(widths, blocks, strict=True)):
            stride = 1 if i == 0 else 2
            layers.append(
                nn.Sequential(
                    *[
                        BasicBlock(cin if j == 0 else width, width, stride if j == 0 else 1)
                        for j in range(depth)
                    ]
                )
            )
            cin = width
            self.feature_info.append(dict(module=f"features.{i + 1}", num_chs=width, reduction=2**i))
        self.features = nn.Sequential(*layers)
        self.num_features = cin
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(cin, num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _create_resnet(variant: str, **kwargs) -> ResNet:
    return ResNet(**kwargs)


@MODELS.register
def resnet_student(**kwargs) -> ResNet:
    """~78 k params, 9.3 M MACs: 16-32-64 stages of one basic block each."""
    defaults = dict(widths=(16, 32, 64), blocks=(1, 1, 1))
    return _create_resnet("resnet_student", **dict(defaults, **kwargs))


@MODELS.register
def resnet_teacher(**kwargs) -> ResNet:
    """~0.70 M params, 81 M MACs: 32-64-128 stages of two basic blocks each, dropout 0.2 before the linear."""
    defaults = dict(widths=(32, 64, 128), blocks=(2, 2, 2), dropout=0.2)
    return _create_resnet("resnet_teacher", **dict(defaults, **kwargs))
