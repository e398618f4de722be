"""Every registered model: builds, has the classifier taps, and the registry reports unknown names."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from benchmarks.registry import Registry  # noqa: E402
from toolkit.models import MODELS, ModelSpec, count_params, create_model  # noqa: E402


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


def conv_macs(side: int, cin: int, cout: int, k: int = 3, groups: int = 1) -> int:
    """A stride-1, same-padded k x k conv on a side x side map: every output element sums cin/groups*k*k."""
    return side * side * cout * (cin // groups) * k * k


def linear_macs(n_in: int, n_out: int) -> int:
    return n_in * n_out


def student_macs_by_hand(side: int = 28) -> int:
    """cnn_student on a 1 x side x side image: 3x3 convs 1->16->32->64, each stage at half the previous
    resolution (2x2 max-pool after each), global average pooling, linear 64->10. Pools and BN count 0."""
    convs = conv_macs(side, 1, 16) + conv_macs(side // 2, 16, 32) + conv_macs(side // 4, 32, 64)
    return convs + linear_macs(64, 10)


def teacher_macs_by_hand(side: int = 28) -> int:
    """cnn_teacher on a 1 x side x side image: 3x3 convs 1->64->128->256 at side, side/2, side/4, then
    the flattened (side/8)^2 x 256 map through linear ->512 and 512->10."""
    convs = conv_macs(side, 1, 64) + conv_macs(side // 2, 64, 128) + conv_macs(side // 4, 128, 256)
    return convs + linear_macs((side // 8) ** 2 * 256, 512) + linear_macs(512, 10)


def test_macs_by_hand_helpers_match_the_arithmetic():
    # the helpers spelled out once for the default 28x28 input (teacher flattens 3x3x256 = 2304 features)
    assert student_macs_by_hand() == 28 * 28 * 16 * 9 + 14 * 14 * 32 * 16 * 9 + 7 * 7 * 64 * 32 * 9 + 64 * 10
    assert teacher_macs_by_hand() == (
        28 * 28 * 64 * 9 + 14 * 14 * 128 * 64 * 9 + 7 * 7 * 256 * 128 * 9 + 2304 * 512 + 512 * 10
    )


@pytest.mark.parametrize("side", [28, 32])
def test_student_and_teacher_macs(side):
    from toolkit.models import count_macs

    teacher = MODELS.create("cnn_teacher", input_size=side)
    student = MODELS.create("cnn_student", input_size=side)
    assert count_macs(teacher, (1, side, side)) == teacher_macs_by_hand(side)
    assert count_macs(student, (1, side, side)) == student_macs_by_hand(side)
    assert count_macs(student, (1, side, side)) * 15 < count_macs(teacher, (1, side, side))
