"""Multiply-accumulate count of one forward pass, from forward hooks on conv and linear layers."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["count_macs"]


def _layer_macs(module: nn.Module, out: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        # Each output element sums in_channels/groups * kh * kw products.
        kh, kw = module.kernel_size
        return out.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Conv1d):
        return out.numel() * (module.in_channels // module.groups) * module.kernel_size[0]
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    return 0


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of conv and linear layers for one input of `input_shape` ((C, H, W), or (L,) token ids); other ops
    (attention's matmuls among them) are not counted."""
    total = 0

    def hook(module, _inputs, out):
        nonlocal total
        total += _layer_macs(module, out)

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))
    ]
    was_training = model.training
    try:
        # text models take int token ids (N, L); id 1 is not padding, so every position counts
        ids = getattr(model, "takes_token_ids", False)
        model.eval()(torch.ones(1, *input_shape, dtype=torch.long) if ids else torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total
