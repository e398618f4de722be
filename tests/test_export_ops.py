"""Mobile-net ops (depthwise conv, hardswish, squeeze-excitation, LayerNorm, GELU) in every export format."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("litert_torch")

from export.onnx import export_onnx  # noqa: E402
from export.parity import TOLERANCES, check_parity  # noqa: E402
from export.tflite import (  # noqa: E402
    export_tflite,
    export_tflite_dynamic_int8,
    export_tflite_fp16,
    export_tflite_int8,
)
from export.torch_program import export_program  # noqa: E402
from tests.test_export import Cummax, MixedOps  # noqa: E402
from tests.test_export_tflite import blobs, fit  # noqa: E402
from toolkit.errors import ExportError  # noqa: E402

SIDE = 16


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """MixedOps trained on 16x16 blobs (real logit margins), 200 test images and its torch logits."""
    torch.manual_seed(0)
    x_train, y_train = blobs(1000, SIDE)
    model = fit(MixedOps(), x_train, y_train)
    x, y = blobs(200, SIDE, seed=1)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    calib = [torch.from_numpy(x_train[i : i + 1]) for i in range(64)]
    return model, x, y, ref, calib, tmp_path_factory.mktemp("ops")


EXPORTS = {  # name -> (file suffix, precision, export call)
    "onnx-fp32": ("onnx", "fp32", lambda m, s, dst, calib: export_onnx(m, s, dst)),
    "tflite-fp32": ("tflite", "fp32", lambda m, s, dst, calib: export_tflite(m, s, dst)),
    "tflite-fp16": ("tflite", "fp16", lambda m, s, dst, calib: export_tflite_fp16(m, s, dst)),
    "tflite-dynamic-int8": (
        "tflite",
        "dynamic-int8",
        lambda m, s, dst, calib: export_tflite_dynamic_int8(m, s, dst),
    ),
    "tflite-int8": ("tflite", "int8", lambda m, s, dst, calib: export_tflite_int8(m, s, dst, calib)),
    "torch-fp32": ("pt2", "fp32", lambda m, s, dst, calib: export_program(m, s, dst)),
}


@pytest.mark.parametrize("name", EXPORTS)
def test_every_format_exports_and_passes_parity(mixed, name):
    model, x, y, ref, calib, tmp = mixed
    suffix, precision, export = EXPORTS[name]
    dst = tmp / f"{name}.{suffix}"
    export(model, torch.from_numpy(x[:1]), dst, calib)
    rec = check_parity(dst, x, y, ref, precision=precision)
    assert rec.passed, rec
    # Global pooling makes blob position hard for this net: ~80% after 120 steps, still real margins.
    assert rec.n == 200 and rec.torch_accuracy > 0.7 and rec.tolerance == TOLERANCES[precision]
    if precision == "fp32":
        assert rec.max_abs_diff < 1e-4, rec.max_abs_diff


@pytest.mark.parametrize(
    "mode,export",
    [
        ("fp16", lambda m, s, dst: export_tflite_fp16(m, s, dst)),
        ("dynamic-int8", lambda m, s, dst: export_tflite_dynamic_int8(m, s, dst)),
        ("int8", lambda m, s, dst: export_tflite_int8(m, s, dst, [s])),
    ],
)
def test_unsupported_op_in_quantized_modes_is_one_line_naming_op_and_format(tmp_path, mode, export):
    dst = tmp_path / f"m_{mode}.tflite"
    with pytest.raises(ExportError) as err:
        export(Cummax().eval(), torch.randn(1, 1, 8, 8), dst)
    msg = str(err.value)
    assert msg.startswith(f"{dst}: TFLite {mode} ") and "unsupported op aten.cummax.default" in msg, msg
    assert "\n" not in msg and "\x1b[" not in msg
    assert not list(tmp_path.iterdir())  # no partial file left behind
