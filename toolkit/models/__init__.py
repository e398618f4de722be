"""Model families, registered by name in `MODELS` (images) and `TEXT_MODELS` (token ids); importing this
registers them all."""

from toolkit.models import cnn, minilm, mobilenet, resnet, text  # noqa: F401  (importing registers each family)
from toolkit.models.macs import count_macs
from toolkit.models.registry import MODELS, TEXT_MODELS
from toolkit.models.sources import TeacherSource, load_teacher
from toolkit.models.spec import ModelSpec, count_params, create_model

__all__ = [
    "MODELS",
    "TEXT_MODELS",
    "ModelSpec",
    "TeacherSource",
    "count_macs",
    "count_params",
    "create_model",
    "load_teacher",
]
