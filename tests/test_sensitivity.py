"""Per-layer int8 sensitivity and the accuracy-budget search, on a student with one outlier channel."""

from __future__ import annotations

import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from export._files import quiet_converters  # noqa: E402
from export.onnx import export_onnx  # noqa: E402
from export.sensitivity import accuracy, layer_sensitivity, quantize_with_max_drop  # noqa: E402
from tests.conftest import fitted_student  # noqa: E402
from toolkit.data import ArrayCalibrationReader  # noqa: E402

OUTLIER = 100.0  # one channel of the first block this many times larger, undone by the second conv


@pytest.fixture(scope="module")
def outlier(tmp_path_factory):
    """The fitted student with channel 3 after the first conv scaled up and the next conv scaled down: the
    float function is unchanged, but one per-tensor activation scale now crushes the other channels."""
    model, x, y = fitted_student()
    with torch.no_grad():
        before = model(torch.from_numpy(x)).numpy()
        bn, next_conv = model.features[0][1], model.features[1][0]
        bn.weight[3] *= OUTLIER
        bn.bias[3] *= OUTLIER
        next_conv.weight[:, 3] /= OUTLIER
        np.testing.assert_allclose(model(torch.from_numpy(x)).numpy(), before, atol=1e-4)
    path = tmp_path_factory.mktemp("sens") / "outlier.onnx"
    with quiet_converters():
        export_onnx(model, torch.from_numpy(x[:1]), path)
    convs = [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"]
    return path, ArrayCalibrationReader(x[:128], batch_size=32), x, y, convs


def test_one_record_per_conv_and_gemm_most_costly_first(outlier):
    path, reader, x, y, convs = outlier
    base = accuracy(path, x, y)
    records = layer_sensitivity(path, reader, x, y)
    assert sorted(r.op_type for r in records) == ["Conv", "Conv", "Conv", "Gemm"]
    assert {r.node for r in records} >= set(convs)
    assert [r.drop for r in records] == sorted((r.drop for r in records), reverse=True)
    for r in records:
        assert 0 <= r.accuracy <= 1 and r.drop == round(100 * (base - r.accuracy), 4)
    # The two convs around the outlier activation cost tens of points; the rest next to nothing.
    assert {r.node for r in records[:2]} == set(convs[:2]) and min(r.drop for r in records[:2]) > 10
    assert max(abs(r.drop) for r in records[2:]) < 1


def test_tiny_budget_keeps_the_costly_layers_float(outlier, tmp_path):
    path, reader, x, y, convs = outlier
    budget = 0.5
    res = quantize_with_max_drop(path, tmp_path / "q.onnx", reader, x, y, max_accuracy_drop=budget)
    assert res["all_int8_accuracy"] < res["fp32_accuracy"] - 0.2  # all-int8 misses by far
    assert len(res["kept_float"]) >= 1 and set(res["kept_float"]) <= {r["node"] for r in res["sensitivity"]}
    assert res["kept_float"] == [r["node"] for r in res["sensitivity"][: len(res["kept_float"])]]
    assert res["met"] and res["drop"] <= budget
    assert res["accuracy"] == accuracy(tmp_path / "q.onnx", x, y)
    assert res["drop"] == round(100 * (res["fp32_accuracy"] - res["accuracy"]), 4)
    assert res["quantization"]["nodes_excluded"] == sorted(res["kept_float"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node]
    assert ops.count("Conv") == 3 and "QuantizeLinear" in ops  # still an int8 file, float where kept
    assert set(convs[:2]) <= set(res["kept_float"])


def test_unreachable_budget_is_reported_with_the_closest_file(outlier, tmp_path, monkeypatch):
    import export.sensitivity as sens

    path, reader, x, y, _ = outlier
    real = sens.accuracy
    # Every int8 file 2 points under float, whatever stays float: no search can meet 1 point.
    monkeypatch.setattr(sens, "accuracy", lambda p, *a: real(p, *a) - (0 if p == path else 0.02))
    res = quantize_with_max_drop(path, tmp_path / "q.onnx", reader, x, y, max_accuracy_drop=1.0)
    assert not res["met"] and res["drop"] > 1.0 and (tmp_path / "q.onnx").exists()
    assert len(res["sensitivity"]) == 4  # it did search, all layers in turn


def test_generous_budget_quantizes_everything(outlier, tmp_path):
    path, reader, x, y, _ = outlier
    res = quantize_with_max_drop(path, tmp_path / "q.onnx", reader, x, y, max_accuracy_drop=100)
    assert res["met"] and res["kept_float"] == [] and res["sensitivity"] == []
    assert res["accuracy"] == res["all_int8_accuracy"]


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda p, r, x, y, d: quantize_with_max_drop(p, d, r, x, y, max_accuracy_drop=-1), "got -1"),
        (
            lambda p, r, x, y, d: layer_sensitivity(p, r, x, y, nodes_to_exclude=["a"]),
            "nodes_to_exclude is chosen here",
        ),
        (
            lambda p, r, x, y, d: layer_sensitivity(p, r, x, y, method="kl"),
            "method must be one of ['minmax', 'entropy', 'percentile']",
        ),
    ],
)
def test_bad_arguments(outlier, tmp_path, call, message):
    path, reader, x, y, _ = outlier
    with pytest.raises(ValueError, match=re.escape(message)):
        call(path, reader, x, y, tmp_path / "q.onnx")
    assert not (tmp_path / "q.onnx").exists()
