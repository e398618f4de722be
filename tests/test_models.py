"""Every registered model: builds, has the classifier taps, and the registry reports unknown names."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from toolkit.models import MODELS, ModelSpec, count_params, create_model  # noqa: E402
from toolkit.registry import Registry  # noqa: E402


@pytest.mark.parametrize("name", MODELS.names())
def test_model_forward_and_taps(name):
    m = MODELS.create(name).eval()
    x = torch.randn(2, 1, 28, 28)
    feats = m.forward_features(x)
    assert feats.ndim == 4
    assert torch.allclose(m.forward_head(feats), m(x))
    assert m(x).shape == (2, 10)


def test_teacher_and_student_sizes():
    t, s = count_params(MODELS.create("cnn_teacher")), count_params(MODELS.create("cnn_student"))
    assert t >= 1_000_000 and s * 10 <= t


def test_spec_roundtrip_builds_same_shape():
    spec = ModelSpec(arch="cnn_student", input_shape=(1, 28, 28), labels=tuple("abc"))
    again = ModelSpec.from_dict(spec.to_dict())
    assert again == spec
    assert create_model(again)(torch.zeros(1, 1, 28, 28)).shape == (1, 3)


def test_registry_errors():
    reg = Registry("thing")
    reg.register(lambda: 1, name="one")
    with pytest.raises(ValueError, match="thing 'one' is already registered"):
        reg.register(lambda: 2, name="one")
    with pytest.raises(ValueError, match="unknown thing 'two'; known: one"):
        reg.create("two")
    assert reg.names("o*") == ["one"] and "one" in reg
