"""The ONNX file of a student distilled under fake quantization (QAT-KD): the PT2E-converted program exported
as QDQ, with each weight's QuantizeLinear folded into an int8 initializer so the file is int8-sized."""

from __future__ import annotations

from pathlib import Path

from export._files import atomic_path, failure_reason
from export.onnx import INPUT_NAME, OUTPUT_NAME, strip_metadata
from toolkit.errors import ExportError

__all__ = ["export_onnx_qat", "fold_weight_quantize"]


def export_onnx_qat(program, sample, dst: str | Path, *, opset: int = 18) -> Path:
    """Export a converted PT2E program (quantize/dequantize ops in its graph) to `dst`, batch dynamic."""
    import torch

    batch = torch.export.Dim("batch", min=1, max=4096)
    rows = torch.cat([sample, sample])  # a batch of 1 would be specialized to 1
    with atomic_path(dst) as tmp:
        try:
            exported = torch.export.export(program, (rows,), dynamic_shapes=({0: batch},))
            torch.onnx.export(
                exported, (rows,), str(tmp), dynamo=True, external_data=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], verbose=False,
            )  # fmt: skip
        except Exception as e:  # the exporter raises many types; one line with the file
            raise ExportError(f"{dst}: ONNX export of the QAT-KD program failed: {failure_reason(e)}") from e
        fold_weight_quantize(tmp)
        strip_metadata(tmp, tmp)
    return Path(dst)


def fold_weight_quantize(path: str | Path) -> int:
    """Replace every QuantizeLinear whose input is a float initializer by the int8 initializer it computes
    (as onnxruntime would at load); returns how many were folded."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    folded = []
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or not all(i in inits for i in node.input):
            continue
        w, scale, zero = (numpy_helper.to_array(inits[i]) for i in node.input)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale.ndim:  # per-channel: scale and zero point along `axis`
            shape = [1] * w.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        info = np.iinfo(zero.dtype)
        q = np.clip(np.rint(w / scale) + zero.astype(np.int32), info.min, info.max).astype(zero.dtype)
        graph.initializer.append(numpy_helper.from_array(q, node.output[0]))
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    onnx.save(model, str(path))
    return len(folded)
