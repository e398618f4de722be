"""Per-layer int8 sensitivity and the accuracy-budget search, on a student with one outlier channel."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from export._files import quiet_converters  # noqa: E402
from export.onnx import export_onnx  # noqa: E402
from export.quantize import quantizable_nodes, quantize_static  # noqa: E402
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


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _int8_weight_nodes(path) -> set[str]:
    """Conv/Gemm nodes whose weight comes through a DequantizeLinear, i.e. the layers run in int8."""
    graph = onnx.load(str(path)).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name for n in graph.node if n.op_type in ("Conv", "Gemm") and n.input[1] in dequantized}


def test_tiny_budget_keeps_exactly_the_two_outlier_convs_float(outlier, tmp_path):
    path, reader, x, y, convs = outlier
    budget = 0.5
    base = accuracy(path, x, y)

    def keeping(kept: list[str], name: str):
        """The static int8 file with `kept` float, and its accuracy drop in points."""
        quantize_static(path, tmp_path / name, reader, nodes_to_exclude=kept)
        return tmp_path / name, 100 * (base - accuracy(tmp_path / name, x, y))

    # Independently of the search: the outlier sits between the first two convs, so either one alone in
    # float misses the budget and both together meet it; the greedy search must stop at those two.
    all_int8, all_int8_drop = keeping([], "all_int8.onnx")
    assert all_int8_drop > 20
    assert keeping(convs[:1], "first.onnx")[1] > budget and keeping(convs[1:2], "second.onnx")[1] > budget
    expected, expected_drop = keeping(convs[:2], "expected.onnx")
    assert expected_drop <= budget

    res = quantize_with_max_drop(path, tmp_path / "q.onnx", reader, x, y, max_accuracy_drop=budget)
    budget_record = res.settings.accuracy_budget
    assert sorted(budget_record.kept_float) == sorted(convs[:2])
    assert budget_record.kept_float == [r.node for r in res.layers[:2]]  # costliest first
    assert _sha256(tmp_path / "q.onnx") == _sha256(expected)
    all_layers = {name for name, _ in quantizable_nodes(path)}
    assert _int8_weight_nodes(tmp_path / "q.onnx") == all_layers - set(convs[:2])  # the rest stay int8
    assert budget_record.met and budget_record.fp32_accuracy == base
    assert (budget_record.accuracy, budget_record.all_int8_accuracy) == (
        accuracy(expected, x, y),
        accuracy(all_int8, x, y),
    )
    assert budget_record.drop == round(100 * (base - budget_record.accuracy), 4) <= budget
    assert res.settings.nodes_excluded == sorted(convs[:2]) and res.settings.mode == "static"


class _AddNet(torch.nn.Module):
    """conv(x) + skip(x) -> ReLU -> mean -> linear: the Add is quantized by onnxruntime but is no
    Conv/Gemm/MatMul, so keeping every layer float still leaves it in int8."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.skip = torch.nn.Conv2d(1, 8, 1)
        self.head = torch.nn.Linear(8, 10)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x) + self.skip(x)).mean((2, 3)))


def test_unreachable_budget_keeps_the_closest_file(tmp_path):
    torch.manual_seed(0)
    model = _AddNet().eval()
    with torch.no_grad():  # channel 3 OUTLIER times larger into the Add, undone by the head
        for conv in (model.conv, model.skip):
            conv.weight[3] *= OUTLIER
            conv.bias[3] *= OUTLIER
        model.head.weight[:, 3] /= OUTLIER
    x = np.random.default_rng(0).standard_normal((256, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).argmax(1).numpy()  # labels: the float model's answers
    path = tmp_path / "add.onnx"
    with quiet_converters():
        export_onnx(model, torch.from_numpy(x[:1]), path)
    reader = ArrayCalibrationReader(x[:128], batch_size=32)

    # The files the search may try: all int8, then the costliest layer, the two costliest, ... kept float.
    ranking = [r.node for r in layer_sensitivity(path, reader, x, y)]
    assert sorted(ranking) == sorted(name for name, _ in quantizable_nodes(path))
    candidates, accs, hashes = [ranking[:i] for i in range(len(ranking) + 1)], [], []
    for i, kept in enumerate(candidates):
        quantize_static(path, tmp_path / f"cand{i}.onnx", reader, nodes_to_exclude=kept)
        accs.append(accuracy(tmp_path / f"cand{i}.onnx", x, y))
        hashes.append(_sha256(tmp_path / f"cand{i}.onnx"))
    assert max(accs) < 0.99  # every candidate misses a 1-point budget (the float model scores 1.0)
    closest = accs.index(max(accs))  # the first of the most accurate
    # the scenario tells "closest" from "first" and "last": the best file keeps some layers, not all
    assert 0 < closest < len(candidates) - 1, accs

    res = quantize_with_max_drop(path, tmp_path / "q.onnx", reader, x, y, max_accuracy_drop=1.0)
    budget = res.settings.accuracy_budget
    assert not budget.met and budget.fp32_accuracy == 1.0
    assert budget.kept_float == candidates[closest]
    assert _sha256(tmp_path / "q.onnx") == hashes[closest]
    assert budget.accuracy == accs[closest] and budget.all_int8_accuracy == accs[0]
    assert budget.drop == round(100 * (1.0 - accs[closest]), 4) > 1.0
    assert [r.node for r in res.layers] == ranking  # it did search, all layers in turn


def test_generous_budget_quantizes_everything(outlier, tmp_path):
    path, reader, x, y, _ = outlier
    res = quantize_with_max_drop(path, tmp_path / "q.onnx", reader, x, y, max_accuracy_drop=100)
    budget = res.settings.accuracy_budget
    assert budget.met and budget.kept_float == [] and res.layers == []
    assert budget.accuracy == budget.all_int8_accuracy


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
