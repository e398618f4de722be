"""The model registry and the spec a checkpoint carries to rebuild its model."""

from __future__ import annotations

from benchmarks.registry import Registry

__all__ = ["MODELS", "TEXT_MODELS"]

MODELS = Registry("model")  # image models: float NCHW input
TEXT_MODELS = Registry("text model")  # text models: int token ids (N, L)
