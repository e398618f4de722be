"""MobileNetV2-style family: inverted residuals (1x1 expand, 3x3 depthwise, linear 1x1 projection), ReLU6.

Strides follow the input: below 64 px a stride-1 stem, then stages that halve the side (28 -> 14 -> 7 -> 4);
from 64 px a stride-2 stem (96 -> 6x6 features), from 128 px the first stage strides too (224 -> 7x7, as
MobileNetV2 at ImageNet size). `features` holds the stem (`features.0`), one `nn.Sequential` per stage
(`features.1`...), then any 1x1 head conv.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from toolkit.errors import InputError
from toolkit.models.registry import MODELS

__all__ = ["InvertedResidual", "MobileNetV2", "mobilenetv2_student", "mobilenetv2_tiny"]


def _make_divisible(v: float, divisor: int = 8) -> int:
    # MobileNet's channel rounding: nearest multiple of `divisor`, never more than 10% below `v`.
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _conv_bn_act(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """1x1 expand (skipped at ratio 1), 3x3 depthwise, linear 1x1 projection; residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        layers: list[nn.Module] = [] if expand_ratio == 1 else [_conv_bn_act(cin, hidden, 1)]
        layers += [
            _conv_bn_act(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


def _per_stage(value: float | Sequence[float], n: int, name: str) -> list[float]:
    values = [value] * n if isinstance(value, (int, float)) else list(value)
    if len(values) != n:
        raise InputError(f"{name} needs one value per stage ({n}), got {len(values)}")
    return values


class MobileNetV2(nn.Module):
    """Stem conv, stages of inverted residuals (first block of each strides), 1x1 head conv, GAP, linear."""

    def __init__(
        self,
        *,
        widths: Sequence[int] = (16, 24, 32, 64),
        blocks: Sequence[int] = (1, 2, 2, 2),
        strides: Sequence[int] | None = None,  # None: from input_size (module docstring)
        expand_ratio: float | Sequence[float] = (1, 6, 6, 6),
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        stem_width: int = 16,
        stem_stride: int | None = None,
        head_width: int = 0,
        in_chans: int = 1,
        num_classes: int = 10,
        input_size: int = 28,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        n = len(widths)
        if stem_stride is None:
            stem_stride = 1 if input_size < 64 else 2
        if strides is None:
            strides = ((2 if input_size >= 128 else 1), *[2] * (n - 1))
        if len(blocks) != n or len(strides) != n:
            raise InputError(
                f"widths, blocks and strides need the same length, got {n}, {len(blocks)}, {len(strides)}"
            )
        ratios = _per_stage(expand_ratio, n, "expand_ratio")
        cin = _make_divisible(stem_width * width_mult)
        layers: list[nn.Module] = [_conv_bn_act(in_chans, cin, 3, stem_stride)]
        reduction = stem_stride  # global average pooling accepts any side; input_size only sets strides
        self.feature_info = [dict(module="features.0", num_chs=cin, reduction=reduction)]
        for width, depth, stride, ratio in zip(widths, blocks, strides, ratios, strict=True):
            cout = _make_divisible(width * width_mult)
            stage = [
                InvertedResidual(cin if i == 0 else cout, cout, stride if i == 0 else 1, ratio)
                for i in range(math.ceil(depth * depth_mult))
            ]
            layers.append(nn.Sequential(*stage))
            cin, reduction = cout, reduction * stride
            self.feature_info.append(
                dict(module=f"features.{len(layers) - 1}", num_chs=cout, reduction=reduction)
            )
        if head_width:
            # Like MobileNetV2's last 1x1 conv, scaled by width_mult only when that widens it.
            cin = _make_divisible(head_width * max(1.0, width_mult))
            layers.append(_conv_bn_act(self.feature_info[-1]["num_chs"], cin, 1))
            self.feature_info.append(
                dict(module=f"features.{len(layers) - 1}", num_chs=cin, reduction=reduction)
            )
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


def _create_mobilenetv2(variant: str, **kwargs) -> MobileNetV2:
    return MobileNetV2(**kwargs)


@MODELS.register
def mobilenetv2_student(**kwargs) -> MobileNetV2:
    """~50 k params, 4.3 M MACs: 16-24-32-64 stages of 1-2-2-1 blocks, expansion 1-4-4-4, 128-ch head conv."""
    defaults = dict(widths=(16, 24, 32, 64), blocks=(1, 2, 2, 1), expand_ratio=(1, 4, 4, 4), head_width=128)
    return _create_mobilenetv2("mobilenetv2_student", **dict(defaults, **kwargs))


@MODELS.register
def mobilenetv2_tiny(**kwargs) -> MobileNetV2:
    """~18 k params, 1.3 M MACs: 8-16-24-32 stages of 1-1-2-1 blocks, expansion 1-4-4-4, no head conv."""
    defaults = dict(widths=(8, 16, 24, 32), blocks=(1, 1, 2, 1), expand_ratio=(1, 4, 4, 4), stem_width=8)
    return _create_mobilenetv2("mobilenetv2_tiny", **dict(defaults, **kwargs))
