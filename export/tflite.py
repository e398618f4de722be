"""torch -> TFLite with litert-torch (NCHW kept), fp32 or full-integer int8 via PT2E."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from export._files import atomic_path, failure_reason
from toolkit.errors import ExportError

__all__ = ["export_tflite", "export_tflite_int8"]


def _litert_torch():
    # litert-torch prints a progress log per conversion step unless told not to; keep users' choice if set.
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    import litert_torch

    return litert_torch


def _convert(model, sample, dst: Path, what: str, **kwargs) -> Path:
    litert_torch = _litert_torch()
    with atomic_path(dst) as tmp:
        try:
            litert_torch.convert(model, (sample,), **kwargs).export(str(tmp))
        except Exception as e:
            raise ExportError(f"{dst}: TFLite {what} conversion failed: {failure_reason(e)}") from e
    return Path(dst)


def export_tflite(model, sample, dst: str | Path) -> Path:
    """Convert `model` traced on `sample` (fixed shape, NCHW) to a float32 .tflite file."""
    return _convert(model.eval(), sample, Path(dst), "fp32")


def export_tflite_int8(
    model, sample, dst: str | Path, calibration: Iterable, *, per_channel: bool = True
) -> dict:
    """Full-integer int8 .tflite (int8 input/output) by PT2E, calibrated on `calibration` tensors.

    Each calibration tensor must have `sample`'s shape. Returns the settings used.
    """
    import torch

    _litert_torch()
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))
    try:
        prepared = prepare_pt2e(torch.export.export(model.eval(), (sample,)).module(), quantizer)
        with torch.no_grad():
            n = sum(1 for x in calibration if prepared(x) is not None)
        converted = move_exported_model_to_eval(convert_pt2e(prepared, fold_quantize=False))
        converted.training = False  # the flag litert-torch checks; the graph's ops are already in eval form
    except Exception as e:
        raise ExportError(f"{dst}: PT2E int8 quantization failed: {failure_reason(e)}") from e
    _convert(converted, sample, Path(dst), "int8", quant_config=QuantConfig(pt2e_quantizer=quantizer))
    return {
        "mode": "static",
        "format": "PT2E",
        "activations": "int8",
        "weights": "int8",
        "per_channel": per_channel,
        "calibration": "minmax",
        "calibration_samples": n,
    }
