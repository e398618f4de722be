"""torch -> ONNX with the dynamo exporter, as one self-contained file."""

from __future__ import annotations

import inspect
from pathlib import Path

from export._files import atomic_path, failure_reason
from toolkit.errors import ExportError

__all__ = ["export_onnx", "INPUT_NAME", "OUTPUT_NAME"]

INPUT_NAME, OUTPUT_NAME = "input", "logits"


def export_onnx(model, sample, dst: str | Path, *, opset: int = 18, dynamic_batch: bool = True) -> Path:
    """Export `model` traced on `sample` (NCHW) to `dst`; the batch dimension is dynamic by default."""
    import torch

    model = model.eval()
    dynamic_shapes = None
    if dynamic_batch:
        arg = next(iter(inspect.signature(model.forward).parameters))
        dynamic_shapes = {arg: {0: torch.export.Dim("batch", min=1, max=4096)}}
    with atomic_path(dst) as tmp:
        try:
            torch.onnx.export(
                model,
                (sample,),
                str(tmp),
                dynamo=True,
                external_data=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=dynamic_shapes,
                verbose=False,
            )
        except Exception as e:  # the exporter raises many types; report the first line with the format
            raise ExportError(f"{dst}: ONNX export failed: {failure_reason(e)}") from e
    return Path(dst)
