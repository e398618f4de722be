"""Model families, registered by name in `MODELS` (importing this registers them all)."""

from toolkit.models import cnn  # noqa: F401  (registers the family)
from toolkit.models.macs import count_macs
from toolkit.models.registry import MODELS
from toolkit.models.spec import ModelSpec, count_params, create_model

__all__ = ["MODELS", "ModelSpec", "count_macs", "count_params", "create_model"]
