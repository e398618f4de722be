"""torch -> TFLite with litert-torch: fp32, fp16 weights, dynamic-range int8 and full-integer int8 (PT2E).

Every file takes NCHW input unless `layout="NHWC"` is asked for. Intermediate tensor names (the torch
module paths litert-torch stores as debug info) are dropped from every file; input and output names stay.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io as _io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from benchmarks.manifest import FileSettings
from export._files import atomic_path, failure_reason
from toolkit.errors import ExportError, InputError

__all__ = [
    "Layout",
    "export_tflite",
    "export_tflite_fp16",
    "export_tflite_dynamic_int8",
    "export_tflite_int8",
    "int8_quantizer",
    "write_tflite_int8",
    "check_tflite_options",
]

Layout = Literal["NCHW", "NHWC"]
IOType = Literal["int8", "float"]
LAYOUTS = ("NCHW", "NHWC")
IO_TYPES = ("int8", "float")


def check_tflite_options(sample, *, layout: str = "NCHW", io: str = "int8") -> None:
    """Raise `ValueError` for an unknown layout or io type, or NHWC asked for a sample that is not 4-D."""
    if layout not in LAYOUTS:
        raise InputError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if io not in IO_TYPES:
        raise InputError(f"io must be one of {', '.join(IO_TYPES)}, got {io!r}")
    if layout == "NHWC" and getattr(sample, "ndim", None) != 4:
        raise InputError(f"layout='NHWC' needs a 4-D (N, C, H, W) sample, got shape {list(sample.shape)}")


def _litert_torch():
    # litert-torch prints a progress log per conversion step unless told not to; keep users' choice if set.
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    import litert_torch

    return litert_torch


def _to_nhwc(x):
    return x.permute(0, 2, 3, 1).contiguous()


def _with_layout(model, sample, layout: str):
    """(model, sample) as converted: NHWC wraps the model so the file's input is (N, H, W, C)."""
    model = model.eval()
    if layout == "NCHW":
        return model, sample
    return _litert_torch().to_channel_last_io(model, args=[0]).eval(), _to_nhwc(sample)


def _finish(path: Path, *, float_io: bool) -> None:
    """Rewrite the converted file: drop intermediate tensor names; with `float_io`, float32 input/output."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    if float_io:
        _float_io(model)
    for graph in model.subgraphs:
        keep = set(graph.inputs) | set(graph.outputs)
        for i, tensor in enumerate(graph.tensors):
            if i not in keep:
                tensor.name = None  # e.g. "toolkit.models.cnn.ConvNet/torch.nn...": ~3 KB of a 30 KB file
    path.write_bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _opcode(model, builtin: int, version: int) -> int:
    from ai_edge_litert import schema_py_generated as schema

    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin and code.version == version:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _float_io(model) -> None:
    """Give a full-integer model float32 inputs and outputs: QUANTIZE after each input, DEQUANTIZE before
    each output (what TensorFlow's converter emits for float I/O); scales are the model's own."""
    from ai_edge_litert import schema_py_generated as schema

    ops = schema.BuiltinOperator
    quantized = (schema.TensorType.INT8, schema.TensorType.UINT8)
    graph = model.subgraphs[0]
    renamed: dict[int, int] = {}

    def float_twin(index: int) -> int:
        src = graph.tensors[index]
        twin = schema.TensorT()
        twin.shape, twin.shapeSignature, twin.name = src.shape, src.shapeSignature, src.name
        twin.type, twin.buffer = schema.TensorType.FLOAT32, 0  # buffer 0 is the empty sentinel
        src.name = None
        graph.tensors.append(twin)
        renamed[index] = len(graph.tensors) - 1
        return renamed[index]

    def op(builtin: int, src: int, dst: int):
        new = schema.OperatorT()
        # QUANTIZE and DEQUANTIZE with an int8/uint8 side are version 2 in TFLite's op versioning.
        new.opcodeIndex, new.inputs, new.outputs = _opcode(model, builtin, 2), [src], [dst]
        return new

    for pos, index in enumerate(graph.inputs):
        if graph.tensors[index].type in quantized:
            graph.inputs[pos] = float_twin(index)
            graph.operators.insert(0, op(ops.QUANTIZE, graph.inputs[pos], index))
    for pos, index in enumerate(graph.outputs):
        if graph.tensors[index].type in quantized:
            graph.outputs[pos] = float_twin(index)
            graph.operators.append(op(ops.DEQUANTIZE, index, graph.outputs[pos]))
    for sig in model.signatureDefs or []:
        for item in [*(sig.inputs or []), *(sig.outputs or [])]:
            item.tensorIndex = renamed.get(item.tensorIndex, item.tensorIndex)


def _convert(model, sample, dst: Path, what: str, *, float_io: bool = False, **kwargs) -> Path:
    litert_torch = _litert_torch()
    with atomic_path(dst) as tmp:
        try:
            # ai-edge-quantizer (fp16) prints a size summary to stdout; the library never prints.
            with contextlib.redirect_stdout(_io.StringIO()):
                litert_torch.convert(model, (sample,), **kwargs).export(str(tmp))
            _finish(tmp, float_io=float_io)
        except Exception as e:
            raise ExportError(f"{dst}: TFLite {what} conversion failed: {failure_reason(e)}") from e
    return Path(dst)


def export_tflite(model, sample, dst: str | Path, *, layout: Layout = "NCHW") -> Path:
    """Convert `model` traced on the NCHW `sample` (fixed shape) to a float32 .tflite taking `layout`."""
    check_tflite_options(sample, layout=layout)
    return _convert(*_with_layout(model, sample, layout), Path(dst), "fp32")


def export_tflite_fp16(model, sample, dst: str | Path, *, layout: Layout = "NCHW") -> FileSettings:
    """float16 weights (dequantized to float32 at load), float32 compute and I/O. Returns the settings."""
    check_tflite_options(sample, layout=layout)
    _litert_torch()
    # The "generative" recipe is a plain ai-edge-quantizer float-casting recipe matching every op.
    from litert_torch.generative.quantize.quant_recipes import full_fp16_recipe

    model, sample = _with_layout(model, sample, layout)
    _convert(model, sample, Path(dst), "fp16", quant_config=full_fp16_recipe())
    return FileSettings(mode="fp16", format="ai-edge-quantizer", weights="float16", activations="float32")


def _pt2e(model, sample, dst: Path, what: str, quantizer, calibration: Iterable) -> tuple[object, int]:
    """PT2E-prepare `model`, run `calibration` through it and convert; returns (module, samples seen)."""
    import torch
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    try:
        prepared = prepare_pt2e(torch.export.export(model, (sample,)).module(), quantizer)
        with torch.no_grad():
            n = sum(1 for x in calibration if prepared(x) is not None)
        converted = move_exported_model_to_eval(convert_pt2e(prepared, fold_quantize=False))
        converted.training = False  # the flag litert-torch checks; the graph's ops are already in eval form
    except Exception as e:
        raise ExportError(f"{dst}: TFLite {what} PT2E quantization failed: {failure_reason(e)}") from e
    return converted, n


def export_tflite_dynamic_int8(model, sample, dst: str | Path, *, layout: Layout = "NCHW") -> FileSettings:
    """Dynamic-range int8 by PT2E: per-channel int8 weights, activations quantized at run time."""
    check_tflite_options(sample, layout=layout)
    _litert_torch()
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig

    # Not ai-edge-quantizer's dynamic recipe: it leaves op versions at their float values, so
    # tflite_runtime 2.14 loads its per-channel FULLY_CONNECTED and silently computes wrong logits
    # (~10% top-1 agreement on cnn_student), where PT2E's version 12 makes 2.14 refuse the file.
    # Per-tensor is not offered: PT2E's per-tensor dynamic files give wrong logits in ai_edge_litert.
    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True)
    quantizer = PT2EQuantizer().set_global(config)
    model, sample = _with_layout(model, sample, layout)
    converted, _ = _pt2e(model, sample, Path(dst), "dynamic-int8", quantizer, [sample])
    _convert(converted, sample, Path(dst), "dynamic-int8", quant_config=QuantConfig(pt2e_quantizer=quantizer))
    return FileSettings(
        mode="dynamic", format="PT2E", activations="int8 (at run time)", weights="int8", per_channel=True
    )


def int8_quantizer(*, per_channel: bool, qat: bool = False):
    """litert-torch's PT2E quantizer for full-integer int8 (symmetric weights), for calibration or QAT."""
    _litert_torch()
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    config = get_symmetric_quantization_config(is_per_channel=per_channel, is_qat=qat)
    # QAT: fake-quantize observers, annotated with the static patterns. The QAT-only conv+BN annotator does
    # not trace on torchao 0.18 (it hands torch.export a function); the QAT program has its BNs folded.
    return PT2EQuantizer().set_global(dataclasses.replace(config, is_qat=False))


def _int8_settings(per_channel: bool, io: str, *, calibration: str, calibration_samples: int) -> FileSettings:
    return FileSettings(
        mode="static",
        format="PT2E",
        activations="int8",
        weights="int8",
        per_channel=per_channel,
        calibration=calibration,
        calibration_samples=calibration_samples,
        io=io,
    )


def export_tflite_int8(
    model,
    sample,
    dst: str | Path,
    calibration: Iterable,
    *,
    per_channel: bool = True,
    io: IOType = "int8",
    layout: Layout = "NCHW",
) -> FileSettings:
    """Full-integer int8 .tflite by PT2E, calibrated on NCHW tensors shaped like `sample`; returns settings.

    `io="int8"` keeps int8 input/output tensors; `io="float"` adds float32 ones (QUANTIZE/DEQUANTIZE inside).
    """
    check_tflite_options(sample, layout=layout, io=io)
    quantizer = int8_quantizer(per_channel=per_channel)
    model, wrapped_sample = _with_layout(model, sample, layout)
    calib = calibration if layout == "NCHW" else (_to_nhwc(x) for x in calibration)
    converted, n = _pt2e(model, wrapped_sample, Path(dst), "int8", quantizer, calib)
    write_tflite_int8(converted, wrapped_sample, dst, quantizer, io=io)
    return _int8_settings(per_channel, io, calibration="minmax", calibration_samples=n)


def write_tflite_int8(converted, sample, dst: str | Path, quantizer, *, io: IOType = "int8") -> Path:
    """The .tflite of a PT2E-converted program (calibrated, or trained with QAT) under `quantizer`."""
    from litert_torch.quantize.quant_config import QuantConfig

    quant_config = QuantConfig(pt2e_quantizer=quantizer)
    return _convert(converted, sample, Path(dst), "int8", float_io=io == "float", quant_config=quant_config)
