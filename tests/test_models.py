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


def test_count_macs_by_hand():
    from toolkit.models import count_macs

    # conv 1->4, 3x3, pad 1 on 8x8: 8*8*4 outputs x 9 MACs; linear 4->3 after GAP: 12 MACs.
    m = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    ).train()
    assert count_macs(m, (1, 8, 8)) == 8 * 8 * 4 * 9 + 12
    assert m.training  # the mode is restored


def test_depthwise_conv_macs_count_groups():
    from toolkit.models import count_macs

    m = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
    assert count_macs(m, (8, 4, 4)) == 4 * 4 * 8 * 9


def test_student_and_teacher_macs():
    from toolkit.models import count_macs

    teacher, student = MODELS.create("cnn_teacher"), MODELS.create("cnn_student")
    # 28x28x64x9 + 14x14x128x64x9 + 7x7x256x128x9 + 2304x512 + 512x10
    assert count_macs(teacher, (1, 28, 28)) == 451_584 + 14_450_688 + 14_450_688 + 1_179_648 + 5_120
    assert count_macs(student, (1, 28, 28)) * 15 < count_macs(teacher, (1, 28, 28))
