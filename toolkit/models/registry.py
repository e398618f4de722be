"""The model registry and the spec a checkpoint carries to rebuild its model."""

from __future__ import annotations

from toolkit.registry import Registry

__all__ = ["MODELS"]

MODELS = Registry("model")
