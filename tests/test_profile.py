"""Per-operator profiles: a tiny two-conv model's profile lists both convolutions, their dtype, and times
that add up to no more than the runtime's own run time."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _two_convs(path):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(size=(8, 1, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(size=(4, 8, 3, 3)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["h"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w2"], ["logits"], name="conv2", pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "two_convs",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4, 28, 28])],
        initializer=[w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, str(path))
    return path


def test_a_two_conv_profile_lists_both_convs_with_dtype_and_times_that_add_up(tmp_path):
    from benchmarks.profile import profile_onnx

    path = _two_convs(tmp_path / "two.onnx")
    x = np.random.default_rng(1).normal(size=(1, 1, 28, 28)).astype(np.float32)
    profile = profile_onnx(path, x, runs=40, warmup=5)
    convs = [op for op in profile.ops if op.op_type == "Conv"]
    # the nodes of the graph onnxruntime ran (optimized: NCHWc convs with the ReLU fused), not the file's
    assert len(convs) == 2 and len({op.node for op in convs}) == 2
    assert all(op.calls == 40 and op.total_us > 0 for op in convs)
    assert all(op.input_dtypes[0] == "float" and op.provider == "CPUExecutionProvider" for op in convs)
    assert profile.runs == 40 and 0 < profile.ops_us <= profile.run_us
    assert set(profile.by_op_type()) >= {"Conv"} and list(profile.by_op_type())[0] == "Conv"
