"""ONNX quantization with onnxruntime.quantization: static int8 (calibrated), dynamic int8, fp16."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Literal

from benchmarks.manifest import FileSettings
from export._files import atomic_path, failure_reason
from toolkit.errors import ExportError, InputError

__all__ = [
    "QUANTIZABLE_OPS",
    "cpu_has_vnni",
    "check_static_quant_arguments",
    "preprocess",
    "quantizable_nodes",
    "quantize_static",
    "quantize_dynamic",
    "convert_fp16",
]

# The ops whose weights carry the model's size and whose int8 kernels carry its speed.
QUANTIZABLE_OPS = ("Conv", "Gemm", "MatMul")
_METHODS = ("minmax", "entropy", "percentile")
_FORMATS = ("QDQ", "QOperator")
_TYPES = ("uint8", "int8")


def cpu_has_vnni() -> bool:
    """True when this CPU has VNNI (AVX512-VNNI or AVX-VNNI); without it u8s8 kernels can saturate."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def check_static_quant_arguments(
    *, method: str, quant_format: str, activation_type: str, weight_type: str, nodes_to_exclude
) -> None:
    """Raise `ValueError` for an unknown option value or a combination onnxruntime has no kernels for."""
    for name, value, allowed in (
        ("method", method, _METHODS),
        ("quant_format", quant_format, _FORMATS),
        ("activation_type", activation_type, _TYPES),
        ("weight_type", weight_type, _TYPES),
    ):
        if value not in allowed:
            raise InputError(f"{name} must be one of {list(allowed)}, got {value!r}")
    if (activation_type, weight_type) == ("int8", "uint8"):
        raise InputError("activation_type='int8' with weight_type='uint8' (S8U8) has no onnxruntime kernels")
    if isinstance(nodes_to_exclude, str) or not all(isinstance(n, str) for n in nodes_to_exclude or ()):
        raise InputError(f"nodes_to_exclude must be a list of node names, got {nodes_to_exclude!r}")


def preprocess(src: str | Path, dst: str | Path) -> Path:
    """onnxruntime's pre-quantization pass (shape inference, basic graph optimization) from `src` to `dst`."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    except Exception as e:
        raise ExportError(f"{src}: ONNX pre-quantization pass failed: {failure_reason(e)}") from e
    return Path(dst)


def quantizable_nodes(path: str | Path) -> list[tuple[str, str]]:
    """(name, op type) of each Conv/Gemm/MatMul node of the main graph, in graph order."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [(n.name, n.op_type) for n in graph.node if n.op_type in QUANTIZABLE_OPS]


def _reduce_range(reduce_range: bool | None, weight_type: str) -> tuple[bool, str]:
    """The reduce_range to use and why: onnxruntime recommends 7-bit weights (or U8U8) on x86 without VNNI,
    where u8s8 multiply-adds (VPMADDUBSW) can saturate."""
    if reduce_range is not None:
        return reduce_range, "set by caller"
    if weight_type == "uint8":
        return False, "auto: U8U8 kernels do not saturate"
    if cpu_has_vnni():
        return False, "auto: this CPU has VNNI"
    return True, "auto: this CPU has no VNNI; 7-bit weights avoid u8s8 saturation"


def _check_per_channel_opset(src: str | Path, per_channel: bool) -> None:
    """Raise `ValueError` for per-channel int8 below opset 13, where onnxruntime writes an invalid model."""
    from export.onnx import onnx_opset

    if per_channel and (opset := onnx_opset(src) or 0) < 13:
        raise InputError(
            f"{src}: per-channel int8 needs opset >= 13, the file has {opset}; use per_channel=False"
        )


def _ort_static_options(
    *,
    method: str,
    per_channel: bool,
    reduce_range: bool,
    activation_type: str,
    weight_type: str,
    quant_format: str,
    nodes_to_exclude: list[str] | None,
) -> dict:
    """onnxruntime's `quantize_static` keyword arguments for edgekd's option strings."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    return dict(
        quant_format=getattr(QuantFormat, quant_format),
        per_channel=per_channel,
        activation_type=types[activation_type],
        weight_type=types[weight_type],
        reduce_range=reduce_range,
        calibrate_method=methods[method],
        nodes_to_exclude=list(nodes_to_exclude or ()),
    )


def _run_static(src: str | Path, dst: str | Path, reader, options: dict, *, strip: bool) -> None:
    """Preprocess `src`, calibrate on `reader` and write the quantized model to `dst` atomically."""
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    from export.onnx import strip_metadata

    with tempfile.TemporaryDirectory() as tmpdir, atomic_path(dst) as tmp:
        pre = preprocess(src, Path(tmpdir) / "preprocessed.onnx")
        # Checked on the preprocessed graph: that is the one onnxruntime matches the names against.
        if missing := sorted(set(options["nodes_to_exclude"]) - {n.name for n in _nodes(pre)}):
            raise InputError(f"{src}: nodes_to_exclude names no node of the graph: {missing}")
        if hasattr(reader, "rewind"):
            reader.rewind()
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the entropy calibrator prints progress
                ort_quantize_static(str(pre), str(tmp), reader, **options)
        except Exception as e:
            raise ExportError(f"{src}: ONNX static quantization failed: {failure_reason(e)}") from e
        if strip:
            strip_metadata(tmp, tmp)


def quantize_static(
    src: str | Path,
    dst: str | Path,
    reader,
    *,
    method: Literal["minmax", "entropy", "percentile"] = "minmax",
    per_channel: bool = True,
    reduce_range: bool | None = None,
    activation_type: Literal["uint8", "int8"] = "uint8",
    weight_type: Literal["uint8", "int8"] = "int8",
    quant_format: Literal["QDQ", "QOperator"] = "QDQ",
    nodes_to_exclude: list[str] | None = None,
    strip: bool = True,
) -> FileSettings:
    """Static int8 quantization of `src` calibrated on `reader` (rewound first when it can be); nodes in
    `nodes_to_exclude` stay float. `reduce_range=None` decides by CPU (see `_reduce_range`). Returns the
    settings used."""
    check_static_quant_arguments(
        method=method,
        quant_format=quant_format,
        activation_type=activation_type,
        weight_type=weight_type,
        nodes_to_exclude=nodes_to_exclude,
    )
    _check_per_channel_opset(src, per_channel)
    reduce_range, why = _reduce_range(reduce_range, weight_type)
    options = _ort_static_options(
        method=method,
        per_channel=per_channel,
        reduce_range=reduce_range,
        activation_type=activation_type,
        weight_type=weight_type,
        quant_format=quant_format,
        nodes_to_exclude=nodes_to_exclude,
    )
    _run_static(src, dst, reader, options, strip=strip)
    return FileSettings(
        mode="static",
        format=quant_format,
        activations=activation_type,
        weights=weight_type,
        per_channel=per_channel,
        reduce_range=reduce_range,
        reduce_range_reason=why,
        calibration=method,
        nodes_excluded=sorted(nodes_to_exclude or ()),
    )


def _nodes(path: Path):
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.node


def quantize_dynamic(
    src: str | Path,
    dst: str | Path,
    *,
    per_channel: bool = False,
    float_embeddings: bool = False,
    strip: bool = True,
) -> FileSettings:
    """Dynamic int8: weights quantized offline, activations at run time (no calibration data);
    `float_embeddings` keeps embedding lookups (Gather) float."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    from export.onnx import strip_metadata

    op_types = [op for op in IntegerOpsRegistry if not (float_embeddings and op == "Gather")]
    with tempfile.TemporaryDirectory() as tmpdir, atomic_path(dst) as tmp:
        pre = preprocess(src, Path(tmpdir) / "preprocessed.onnx")
        try:
            ort_quantize_dynamic(
                str(pre),
                str(tmp),
                per_channel=per_channel,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=op_types,
            )
        except Exception as e:
            raise ExportError(f"{src}: ONNX dynamic quantization failed: {failure_reason(e)}") from e
        if strip:
            strip_metadata(tmp, tmp)
    return FileSettings(
        mode="dynamic",
        format="QOperator",
        activations="uint8 (at run time)",
        weights="int8",
        per_channel=per_channel,
        embeddings="float" if float_embeddings else "int8",
    )


def convert_fp16(
    src: str | Path, dst: str | Path, *, keep_io_types: bool = True, strip: bool = True
) -> FileSettings:
    """Weights and activations in float16; inputs/outputs stay float32 unless `keep_io_types=False`."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from export.onnx import strip_metadata

    with atomic_path(dst) as tmp:
        try:
            model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=keep_io_types)
            onnx.save(model, str(tmp))
        except Exception as e:
            raise ExportError(f"{src}: ONNX fp16 conversion failed: {failure_reason(e)}") from e
        if strip:
            strip_metadata(tmp, tmp)
    return FileSettings(mode="fp16", keep_io_types=keep_io_types)
