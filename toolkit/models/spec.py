"""`ModelSpec`: what it takes to rebuild a model and to describe its input in a manifest."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from toolkit.models.registry import MODELS, TEXT_MODELS

__all__ = ["ModelSpec", "create_model", "count_params"]


@dataclass
class ModelSpec:
    """Architecture name and kwargs, plus input shape (CHW, or (L,) token ids), layout, normalization and
    class labels."""

    arch: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, ...] = (1, 28, 28)
    layout: str = "NCHW"
    mean: tuple[float, ...] = (0.0,)  # per channel (one value: all channels)
    std: tuple[float, ...] = (1.0,)
    labels: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        d = dict(d)
        d["input_shape"], d["labels"] = tuple(d["input_shape"]), tuple(d.get("labels", ()))
        for key in ("mean", "std"):  # checkpoints before per-channel normalization hold one float
            if key in d:
                d[key] = tuple(d[key]) if isinstance(d[key], list | tuple) else (float(d[key]),)
        return cls(**d)


def create_model(spec: ModelSpec):
    """Build the (untrained) `nn.Module` a spec describes."""
    if spec.arch in TEXT_MODELS:  # token ids (N, L): no channels or image size to pass
        return TEXT_MODELS.create(spec.arch, **dict(dict(num_classes=len(spec.labels) or 2), **spec.kwargs))
    c, h, _ = spec.input_shape
    kwargs = dict(in_chans=c, num_classes=len(spec.labels) or 10, input_size=h)
    return MODELS.create(spec.arch, **dict(kwargs, **spec.kwargs))


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
