"""ONNX int8 quantization with onnxruntime.quantization (static QDQ, calibrated)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

from export._files import atomic_path, failure_reason
from toolkit.errors import ExportError

__all__ = ["cpu_has_vnni", "quantize_static", "quantize_dynamic", "convert_fp16"]


def cpu_has_vnni() -> bool:
    """True when this CPU has VNNI (AVX512-VNNI or AVX-VNNI); without it u8s8 kernels can saturate."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def quantize_static(
    src: str | Path,
    dst: str | Path,
    reader,
    *,
    method: Literal["minmax", "entropy", "percentile"] = "minmax",
    per_channel: bool = True,
    reduce_range: bool | None = None,
) -> dict:
    """Static int8 QDQ quantization of `src` calibrated on `reader`; returns the settings used.

    `reduce_range=None` picks 7-bit weights on CPUs without VNNI, as onnxruntime documents for x86.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if method not in methods:
        raise ValueError(f"method must be one of {sorted(methods)}, got {method!r}")
    if reduce_range is None:
        reduce_range = not cpu_has_vnni()
    with tempfile.TemporaryDirectory() as tmpdir, atomic_path(dst) as tmp:
        pre = Path(tmpdir) / "preprocessed.onnx"
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            ort_quantize_static(
                str(pre),
                str(tmp),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                reduce_range=reduce_range,
                calibrate_method=methods[method],
            )
        except Exception as e:
            raise ExportError(f"{src}: ONNX static quantization failed: {failure_reason(e)}") from e
    return {
        "mode": "static",
        "format": "QDQ",
        "activations": "uint8",
        "weights": "int8",
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "calibration": method,
    }


def quantize_dynamic(src: str | Path, dst: str | Path, *, per_channel: bool = False) -> dict:
    """Dynamic int8: weights quantized offline, activations at run time (no calibration data)."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    with atomic_path(dst) as tmp:
        try:
            ort_quantize_dynamic(str(src), str(tmp), per_channel=per_channel, weight_type=QuantType.QInt8)
        except Exception as e:
            raise ExportError(f"{src}: ONNX dynamic quantization failed: {failure_reason(e)}") from e
    return {
        "mode": "dynamic",
        "format": "QOperator",
        "activations": "uint8 (at run time)",
        "weights": "int8",
        "per_channel": per_channel,
    }


def convert_fp16(src: str | Path, dst: str | Path, *, keep_io_types: bool = True) -> dict:
    """Weights and activations in float16; inputs/outputs stay float32 unless `keep_io_types=False`."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with atomic_path(dst) as tmp:
        try:
            model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=keep_io_types)
            onnx.save(model, str(tmp))
        except Exception as e:
            raise ExportError(f"{src}: ONNX fp16 conversion failed: {failure_reason(e)}") from e
    return {"mode": "fp16", "keep_io_types": keep_io_types}
