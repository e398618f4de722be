"""MobileNetV2 and ResNet families: taps, shapes, knobs, hand-counted params and MACs, ONNX/TFLite parity."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from toolkit.models import MODELS, count_macs, count_params  # noqa: E402
from toolkit.models.mobilenet import MobileNetV2  # noqa: E402
from toolkit.models.resnet import ResNet  # noqa: E402

FAMILIES = MODELS.names("mobilenetv2_*") + MODELS.names("resnet_*")
# mobilenetv2_tiny uses the same ops as mobilenetv2_student, so exporting one of them is enough.
EXPORTED = ["mobilenetv2_student", "resnet_student"]


def _randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    # Non-trivial BN statistics and affine terms, so BN folding and exact reloads are really exercised.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model.eval()


def test_families_are_registered():
    assert {"mobilenetv2_student", "mobilenetv2_tiny", "resnet_student", "resnet_teacher"} <= set(FAMILIES)


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_names_its_stages_features_n(name):
    # Feature-KD configs name taps as `features.N`; every family keeps stages in one `features` Sequential.
    m = MODELS.create(name).eval()
    assert isinstance(m.features, torch.nn.Sequential) and len(m.features) >= 3
    seen = {}
    hooks = [
        m.get_submodule(f"features.{i}").register_forward_hook(lambda _m, _i, o, i=i: seen.__setitem__(i, o))
        for i in range(len(m.features))
    ]
    m(torch.randn(1, 1, 28, 28))
    for h in hooks:
        h.remove()
    assert sorted(seen) == list(range(len(m.features)))
    assert all(t.ndim == 4 for t in seen.values())


@pytest.mark.parametrize("name", FAMILIES)
def test_feature_info_matches_the_taps(name):
    m = MODELS.create(name).eval()
    x = torch.randn(1, 1, 28, 28)
    out = {}
    hooks = [
        m.get_submodule(k).register_forward_hook(lambda _m, _i, o, k=k: out.setdefault(k, o))
        for k in (info["module"] for info in m.feature_info)
    ]
    m(x)
    for h in hooks:
        h.remove()
    for info in m.feature_info:
        side = -(-28 // info["reduction"])  # ceil: stride-2 convs with padding 1 round up
        assert tuple(out[info["module"]].shape) == (1, info["num_chs"], side, side)
    assert m.feature_info[-1]["num_chs"] == m.num_features


@pytest.mark.parametrize("name", FAMILIES)
def test_forward_shapes_and_split_forward(name):
    m = MODELS.create(name, in_chans=3, num_classes=7, input_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    feats = m.forward_features(x)
    assert feats.shape[:2] == (2, m.num_features)
    assert torch.equal(m.forward_head(feats), m(x))
    assert m(x).shape == (2, 7)


def test_student_sizes_fit_their_roles():
    p = {n: count_params(MODELS.create(n)) for n in FAMILIES}
    assert 20_000 <= p["mobilenetv2_student"] <= 60_000
    assert 10_000 <= p["mobilenetv2_tiny"] < p["mobilenetv2_student"]
    assert 30_000 <= p["resnet_student"] <= 80_000
    assert 500_000 <= p["resnet_teacher"] <= 1_500_000
    # Downsampling 28x28: MobileNetV2 ends at 4x4, ResNet at 7x7.
    assert MODELS.create("mobilenetv2_student").forward_features(torch.zeros(1, 1, 28, 28)).shape[-1] == 4
    assert MODELS.create("resnet_student").forward_features(torch.zeros(1, 1, 28, 28)).shape[-1] == 7


def test_mobilenet_params_and_macs_by_hand():
    m = MobileNetV2(
        widths=(8, 16), blocks=(1, 1), strides=(1, 2), expand_ratio=(1, 2), stem_width=8, num_classes=3
    )
    # stem 1->8 3x3 + BN: 72 + 16. Block 8->8 (t=1, residual): dw 72 + BN 16, project 64 + BN 16.
    # Block 8->16 stride 2 (t=2, hidden 16): expand 128 + 32, dw 144 + 32, project 256 + 32. Linear 16*3 + 3.
    assert count_params(m) == (72 + 16) + (72 + 16 + 64 + 16) + (128 + 32 + 144 + 32 + 256 + 32) + 51 == 931
    assert [b.use_residual for b in m.modules() if hasattr(b, "use_residual")] == [True, False]
    # 8x8 input: stem 64*8*9; dw 64*8*9, project 64*8*8; expand at 8x8 64*16*8, dw to 4x4 16*16*9,
    # project 16*16*16; linear 3*16. The depthwise convs count 9 MACs per output, not 9*channels.
    assert count_macs(m, (1, 8, 8)) == 4608 + 4608 + 4096 + 8192 + 2304 + 4096 + 48 == 27_952


def test_resnet_params_and_macs_by_hand():
    m = ResNet(widths=(4, 8), blocks=(1, 1), num_classes=3)
    # stem 36 + BN 8; block 4->4: two 3x3 convs 144 each + two BN 8; block 4->8 stride 2: 288 + 16,
    # 576 + 16, 1x1 shortcut 32 + 16; linear 8*3 + 3.
    assert count_params(m) == 44 + (144 + 8) * 2 + (288 + 16 + 576 + 16 + 32 + 16) + 27 == 1319
    # 8x8 input: stem 64*4*9; stage 1 two convs 64*4*36; stage 2 at 4x4: 16*8*36, 16*8*72, shortcut 16*8*4.
    assert count_macs(m, (1, 8, 8)) == 2304 + 9216 * 2 + 4608 + 9216 + 512 + 24 == 35_096


@pytest.mark.parametrize(
    ("cls", "knob", "values"),
    [
        (MobileNetV2, "width_mult", [0.5, 1.0, 2.0]),
        (MobileNetV2, "depth_mult", [1.0, 2.0, 3.0]),
        (MobileNetV2, "expand_ratio", [2, 4, 6]),
        (MobileNetV2, "head_width", [0, 64, 256]),
        (ResNet, "widths", [(8, 16, 32), (16, 32, 64), (32, 64, 128)]),
        (ResNet, "blocks", [(1, 1, 1), (2, 2, 2), (3, 3, 3)]),
    ],
)
def test_knobs_grow_params_monotonically(cls, knob, values):
    counts = [count_params(cls(**{knob: v})) for v in values]
    assert counts == sorted(counts) and len(set(counts)) == len(counts), counts


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (MobileNetV2, dict(widths=(8, 16), blocks=(1,), strides=(1, 2)), "same length"),
        (
            MobileNetV2,
            dict(widths=(8, 16), blocks=(1, 1), strides=(1, 2), expand_ratio=(1, 2, 3)),
            "per stage",
        ),
        (ResNet, dict(widths=(8,), blocks=(1, 2)), "same length"),
    ],
)
def test_bad_knobs_raise(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


@pytest.mark.parametrize("name", EXPORTED)
@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_students_export_with_parity(name, fmt, tmp_path):
    if fmt == "tflite":
        pytest.importorskip("litert_torch")
    else:
        pytest.importorskip("onnxruntime")
    from export.onnx import export_onnx
    from export.parity import check_parity
    from export.tflite import export_tflite

    torch.manual_seed(0)
    model = _randomize_bn(MODELS.create(name))
    x = np.random.default_rng(0).standard_normal((50, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    dst = tmp_path / f"{name}.{fmt}"
    (export_onnx if fmt == "onnx" else export_tflite)(model, torch.from_numpy(x[:1]), dst)
    rec = check_parity(dst, x, ref.argmax(1), ref, precision="fp32")
    assert rec.passed and rec.n == 50 and rec.top1_agreement == 1.0, rec
    assert rec.max_abs_diff < 1e-4
