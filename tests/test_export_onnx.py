"""ONNX export with either exporter, simplification, metadata stripping, and the quantizers' options."""

from __future__ import annotations

import importlib.util
import re
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from benchmarks.manifest import FileSettings  # noqa: E402
from benchmarks.outputs import run_file  # noqa: E402
from export._files import quiet_converters  # noqa: E402
from export.onnx import (  # noqa: E402
    SimplifyStats,
    export_onnx,
    node_count,
    simplify_onnx,
    size_breakdown,
    strip_metadata,
)
from export.parity import TOLERANCES, check_parity  # noqa: E402
from export.quantize import convert_fp16, quantize_dynamic, quantize_static  # noqa: E402
from tests.conftest import fitted_student  # noqa: E402
from toolkit.data import ArrayCalibrationReader  # noqa: E402
from toolkit.errors import ExportError  # noqa: E402


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    model, x, y = fitted_student()
    tmp = tmp_path_factory.mktemp("onnx")
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    with quiet_converters():
        raw = export_onnx(model, torch.from_numpy(x[:1]), tmp / "raw.onnx", strip=False)
    fp32 = tmp / "student.onnx"
    strip_metadata(raw, fp32)
    return SimpleNamespace(model=model, x=x, y=y, ref=ref, tmp=tmp, raw=raw, fp32=fp32)


def test_fitted_student_is_a_usable_classifier(student):
    pred = student.ref.argmax(1)
    assert (pred == student.y).mean() > 0.95 and len(set(pred)) == 10


@pytest.mark.parametrize("exporter,opset", [("legacy", 13), ("dynamo", 18)])
def test_both_exporters_pass_parity(student, exporter, opset):
    dst = student.tmp / f"{exporter}{opset}.onnx"
    with quiet_converters():
        export_onnx(student.model, torch.from_numpy(student.x[:1]), dst, opset=opset, exporter=exporter)
    model = onnx.load(str(dst))
    assert [o.version for o in model.opset_import if o.domain == ""] == [opset]
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits"]
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value  # dynamic batch
    rec = check_parity(dst, student.x, student.y, student.ref, precision="fp32")
    assert rec.passed and rec.top1_agreement == 1.0 and rec.max_abs_diff < 1e-4
    np.testing.assert_allclose(run_file(dst, student.x[:3]), student.ref[:3], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(opset=13, exporter="dynamo"), "use exporter='legacy' for opset 7-17"),
        (dict(opset=21, exporter="legacy"), "opset 21 is outside 7-20 for exporter='legacy'"),
        (dict(opset=18, exporter="torchscript"), "exporter must be one of ['dynamo', 'legacy']"),
    ],
)
def test_bad_export_arguments(student, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        export_onnx(student.model, torch.from_numpy(student.x[:1]), tmp_path / "m.onnx", **kwargs)
    assert not list(tmp_path.iterdir())


def _foldable(path) -> None:
    """x -> Identity -> Mul(c1 + c2) -> Relu: the Identity goes and the Add folds into one constant."""
    c1 = helper.make_tensor("c1", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])
    c2 = helper.make_tensor("c2", TensorProto.FLOAT, [4], [0.5, 0.5, -1.0, 2.0])
    nodes = [
        helper.make_node("Identity", ["x"], ["xi"], name="id"),
        helper.make_node("Add", ["c1", "c2"], ["c"], name="add"),
        helper.make_node("Mul", ["xi", "c"], ["m"], name="mul"),
        helper.make_node("Relu", ["m"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "foldable",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        initializer=[c1, c2],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


_TOOLS = [
    "ort",
    pytest.param(
        "onnxslim",
        marks=pytest.mark.skipif(importlib.util.find_spec("onnxslim") is None, reason="no onnxslim"),
    ),
]


@pytest.mark.parametrize("tool", _TOOLS)
def test_simplify_folds_constants_and_keeps_outputs(student, tmp_path, tool):
    _foldable(tmp_path / "f.onnx")
    info = simplify_onnx(tmp_path / "f.onnx", tmp_path / "f_s.onnx", tool=tool)
    assert info == SimplifyStats(tool=tool, nodes_before=4, nodes_after=2)
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    np.testing.assert_allclose(
        run_file(tmp_path / "f_s.onnx", x), run_file(tmp_path / "f.onnx", x), rtol=1e-6
    )
    info = simplify_onnx(student.fp32, tmp_path / "s.onnx", tool=tool)  # already lean: nothing to remove
    # BN folded into its conv: Conv-Relu-MaxPool per stage, GAP as ReduceMean, flatten, then the linear head
    lean = ["Conv", "Relu", "MaxPool"] * 3 + ["ReduceMean", "Reshape", "Gemm"]
    assert [n.op_type for n in onnx.load(str(tmp_path / "s.onnx")).graph.node] == lean
    assert info.nodes_after == info.nodes_before == node_count(student.fp32) == len(lean)
    np.testing.assert_allclose(run_file(tmp_path / "s.onnx", student.x), student.ref, rtol=1e-4, atol=1e-4)
    assert size_breakdown(tmp_path / "s.onnx")["value_info"] == 0  # stripped after the tool


def test_simplify_without_onnxslim(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxslim" else real(n, *a))
    _foldable(tmp_path / "f.onnx")
    with pytest.raises(ExportError, match="onnxslim is not installed; install edgekd's simplify extra"):
        simplify_onnx(tmp_path / "f.onnx", tmp_path / "out.onnx", tool="onnxslim")
    assert simplify_onnx(tmp_path / "f.onnx", tmp_path / "out.onnx").tool == "ort"


def test_strip_keeps_outputs_identical_and_shrinks(student, tmp_path):
    raw = size_breakdown(student.raw)
    assert raw["metadata"] > 0.1 * raw["total"]  # stack traces, FX nodes, scopes from torch.onnx
    info = strip_metadata(student.raw, tmp_path / "s.onnx")
    assert info.metadata_props > 50 and info.value_info > 0
    assert info.bytes_after < info.bytes_before - raw["metadata"] * 0.9
    stripped = size_breakdown(tmp_path / "s.onnx")
    assert (
        stripped["metadata"] == stripped["value_info"] == 0 and stripped["weights"] > 0.95 * stripped["total"]
    )
    out = run_file(student.raw, student.x)
    assert np.array_equal(run_file(tmp_path / "s.onnx", student.x), out)
    info = strip_metadata(tmp_path / "s.onnx", tmp_path / "c.onnx", compact_names=True)
    assert info.compact_names and info.bytes_after < info.bytes_before
    assert np.array_equal(run_file(tmp_path / "c.onnx", student.x), out)
    graph = onnx.load(str(tmp_path / "c.onnx")).graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["logits"]


@pytest.mark.parametrize(
    "quant_format,per_channel,compact,min_ratio",
    [("QDQ", True, False, 2.9), ("QDQ", False, True, 3.5), ("QOperator", True, True, 3.5)],
)
def test_int8_file_size_against_fp32(student, tmp_path, quant_format, per_channel, compact, min_ratio):
    """Both files stripped alike; QDQ pays for a Q/DQ pair per tensor, QOperator for none, per-channel
    for a scale, zero point and int32 bias per output channel."""
    reader = ArrayCalibrationReader(student.x[:128], batch_size=32)
    fp32, int8 = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    strip_metadata(student.fp32, fp32, compact_names=compact)
    quantize_static(student.fp32, int8, reader, quant_format=quant_format, per_channel=per_channel)
    strip_metadata(int8, int8, compact_names=compact)
    ratio = fp32.stat().st_size / int8.stat().st_size
    assert ratio >= min_ratio, f"{quant_format}: {ratio:.2f}x"
    rec = check_parity(int8, student.x, student.y, student.ref, precision="int8")
    assert rec.passed and rec.accuracy > 0.95


def test_quantize_static_options_are_recorded(student, tmp_path):
    reader = ArrayCalibrationReader(student.x[:64], batch_size=16)
    first_conv = next(n.name for n in onnx.load(str(student.fp32)).graph.node if n.op_type == "Conv")
    q = quantize_static(
        student.fp32,
        tmp_path / "q.onnx",
        reader,
        activation_type="int8",
        quant_format="QOperator",
        reduce_range=False,
        nodes_to_exclude=[first_conv],
        method="percentile",
    )
    assert q.activations == "int8" and q.format == "QOperator" and q.calibration == "percentile"
    assert q.reduce_range is False and q.reduce_range_reason == "set by caller"
    assert q.nodes_excluded == [first_conv]
    ops = [n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node]
    assert ops.count("Conv") == 1 and ops.count("QLinearConv") == 2  # the excluded conv stays float
    assert (run_file(tmp_path / "q.onnx", student.x).argmax(1) == student.ref.argmax(1)).mean() > 0.95
    auto = quantize_static(student.fp32, tmp_path / "a.onnx", reader)
    assert auto.reduce_range_reason.startswith("auto: ") and auto.weights == "int8"


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(method="kl"), "method must be one of ['minmax', 'entropy', 'percentile'], got 'kl'"),
        (dict(quant_format="QLinear"), "quant_format must be one of ['QDQ', 'QOperator']"),
        (dict(activation_type="int8", weight_type="uint8"), "(S8U8) has no onnxruntime kernels"),
        (dict(nodes_to_exclude="node_Conv_1"), "nodes_to_exclude must be a list of node names"),
        (
            dict(nodes_to_exclude=["no_such_node"]),
            "nodes_to_exclude names no node of the graph: ['no_such_node']",
        ),
    ],
)
def test_bad_quantize_arguments(student, tmp_path, kwargs, message):
    reader = ArrayCalibrationReader(student.x[:8])
    with pytest.raises(ValueError, match=re.escape(message)):
        quantize_static(student.fp32, tmp_path / "q.onnx", reader, **kwargs)
    assert not (tmp_path / "q.onnx").exists()


def test_per_channel_below_opset_13_is_refused(student, tmp_path):
    with quiet_converters():
        export_onnx(
            student.model, torch.from_numpy(student.x[:1]), tmp_path / "o11.onnx", opset=11, exporter="legacy"
        )
    reader = ArrayCalibrationReader(student.x[:32], batch_size=16)
    with pytest.raises(ValueError, match="per-channel int8 needs opset >= 13, the file has 11"):
        quantize_static(tmp_path / "o11.onnx", tmp_path / "q.onnx", reader)
    quantize_static(tmp_path / "o11.onnx", tmp_path / "q.onnx", reader, per_channel=False)
    assert (run_file(tmp_path / "q.onnx", student.x).argmax(1) == student.ref.argmax(1)).mean() > 0.95


def test_dynamic_int8_and_fp16_pass_parity(student, tmp_path):
    dyn = quantize_dynamic(student.fp32, tmp_path / "dyn.onnx")
    fp16 = convert_fp16(student.fp32, tmp_path / "fp16.onnx")
    assert dyn.mode == "dynamic" and fp16 == FileSettings(mode="fp16", keep_io_types=True)
    in_manifest = {"mode": "fp16", "keep_io_types": True}  # the keys given, as the manifest writes them
    assert fp16.model_dump(exclude_unset=True) == in_manifest
    ops = {n.op_type for n in onnx.load(str(tmp_path / "dyn.onnx")).graph.node}
    assert {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"} <= ops
    dyn_tol = "dynamic-int8" if "dynamic-int8" in TOLERANCES else "int8"
    rec = check_parity(tmp_path / "dyn.onnx", student.x, student.y, student.ref, precision=dyn_tol)
    assert rec.passed and rec.accuracy > 0.95
    weights = onnx.load(str(tmp_path / "fp16.onnx")).graph.initializer
    assert {w.data_type for w in weights if len(w.dims) > 1} == {TensorProto.FLOAT16}
    rec = check_parity(tmp_path / "fp16.onnx", student.x, student.y, student.ref, precision="fp16")
    assert rec.passed and rec.max_abs_diff < 5e-2 and rec.top1_agreement > 0.99
    assert (tmp_path / "fp16.onnx").stat().st_size < 0.6 * student.fp32.stat().st_size


def _lookup_classifier(path, table: np.ndarray, head: np.ndarray):
    """ids (N, L) -> Gather(table) -> ReduceMean over L -> MatMul(head): a token-id model in onnx's API."""
    from onnx import numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "input"], ["emb"]),
            helper.make_node("ReduceMean", ["emb", "axes"], ["pooled"], keepdims=0),
            helper.make_node("MatMul", ["pooled", "head"], ["logits"]),
        ],
        "lookup",
        [helper.make_tensor_value_info("input", TensorProto.INT64, ["batch", 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
            numpy_helper.from_array(head, "head"),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def test_dynamic_int8_keeps_embeddings_float_where_int8_ones_cost_agreement(tmp_path):
    """A table with one huge row: per-tensor int8 rounds every other row to zero, agreement falls below 97 %
    on the validation ids, and the file is written again with the lookup float, saying why; a table with
    even rows keeps int8 embeddings."""
    from export.exporters import ExportJob
    from export.exporters.onnx import _dynamic_int8

    rng = np.random.default_rng(0)
    head = rng.standard_normal((16, 2)).astype(np.float32)
    ids = rng.integers(1, 64, (200, 8))
    settings = SimpleNamespace(onnx_dynamic_per_channel=True)
    for outlier, embeddings in ((1000.0, "float"), (None, "int8")):
        table = (0.05 * rng.standard_normal((64, 16))).astype(np.float32)
        if outlier:
            table[0] = outlier  # id 0 (padding) never occurs in `ids`
        fp32 = _lookup_classifier(tmp_path / f"{embeddings}.onnx", table, head)
        dst = tmp_path / f"{embeddings}_dynamic_int8.onnx"
        job = ExportJob(
            name="m", model=None, sample=None, precision="dynamic-int8", dst=dst, settings=settings,
            calib=ids, x_val=ids, y_val=ids[:, 0], per_channel=False, per_channel_reason="", work=tmp_path,
        )  # fmt: skip
        q = _dynamic_int8(job, fp32)
        assert q.embeddings == embeddings and q.per_channel is True
        agree = np.mean(run_file(dst, ids).argmax(1) == run_file(fp32, ids).argmax(1))
        assert agree >= TOLERANCES["dynamic-int8"]["top1_agreement"]
        table_types = {
            i.data_type for i in onnx.load(str(dst)).graph.initializer if i.name.startswith("table")
        }
        if outlier:
            assert re.fullmatch(
                r"int8 embeddings: \d+\.\d+% top-1 agreement .* below 97%", q.embeddings_reason
            )
            assert table_types == {TensorProto.FLOAT}
        else:
            assert "embeddings_reason" not in q.model_fields_set and TensorProto.UINT8 in table_types
