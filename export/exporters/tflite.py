"""TFLite files through litert-torch (no TensorFlow): fp32, fp16, dynamic int8 and full-integer static int8
(PT2E, calibrated; its layout searched where the default runs slower than fp32), in NCHW or NHWC layout."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from benchmarks.manifest import FileSettings, QatRecord
from export.exporters import Exporter, ExportJob, register_exporter

__all__ = ["write_tflite"]


def _tflite_fp32(job: ExportJob) -> Path:
    """The float .tflite the int8 layouts are timed and checked against (written once per model)."""
    from export import tflite

    path = job.work / f"{job.name}.{job.settings.tflite_layout}.tflite"
    if not path.exists():
        tflite.export_tflite(job.model, job.sample, path, layout=job.settings.tflite_layout)
    return path


def write_tflite(job: ExportJob) -> FileSettings | None:
    """One TFLite file at `job.precision` (None for fp32: nothing beyond the format to record)."""
    from export import tflite
    from export._files import atomic_path

    layout, args = job.settings.tflite_layout, (job.model, job.sample, job.dst)
    if job.precision == "fp32":
        with atomic_path(job.dst) as tmp:
            shutil.copyfile(_tflite_fp32(job), tmp)
        return None
    if job.precision == "fp16":
        return tflite.export_tflite_fp16(*args, layout=layout)
    if job.precision == "dynamic-int8":
        return tflite.export_tflite_dynamic_int8(*args, layout=layout)
    return _static_int8(job)


def _static_int8(job: ExportJob) -> FileSettings:
    from export.int8_layouts import int8_file, tflite_layouts

    e = job.settings
    # token ids go in as they are: only the float logits out can be int8, and they stay float for text
    float_input = job.sample.is_floating_point()
    io = e.tflite_int8_io if float_input else "float"
    ios = ("int8", "float") if float_input else ("float",)
    writers = tflite_layouts(job.model, job.sample, job.calib, layout=e.tflite_layout, ios=ios)
    default = f"{'per-channel' if job.per_channel else 'per-tensor'}, {io} io"
    x_val = job.x_val.transpose(0, 2, 3, 1) if e.tflite_layout == "NHWC" else job.x_val
    fp32 = _tflite_fp32(job)
    settings = int8_file(e.tflite_int8_search, fp32, job.dst, writers, default, x_val, backend="litert")
    if job.qat is None:  # the pipeline offers quantization-aware distillation for students only
        return settings
    return settings.merged(qat=_qat(job, settings, fp32, x_val))


def _qat(job: ExportJob, ptq: FileSettings, fp32: Path, x_val) -> QatRecord:
    """PTQ against fp32, and QAT-KD where asked (`qat_choice.py`), for this TFLite int8 file."""
    from export import tflite
    from export.exporters.qat_choice import ptq_or_qat

    def write(trained, path: Path) -> None:
        tflite.write_tflite_int8(trained.program, job.sample, path, trained.quantizer, io=ptq.io)

    # the QAT-KD program is NCHW (the config refuses qat with NHWC), like `x_val` here
    return ptq_or_qat(job, ptq.per_channel, fp32, x_val, backend="litert", write_qat=write)


def _configured(name: str, settings: Any, precisions: tuple[str, ...]) -> tuple[str, ...]:
    """`export.tflite_precisions`, where set, narrows the precisions of every model's TFLite files."""
    only = settings.tflite_precisions
    return precisions if only is None else tuple(p for p in precisions if p in only)


def _layout(settings: Any, model_layout: str) -> str:
    """Token ids stay (batch, sequence); images go in the configured `export.tflite_layout`."""
    return model_layout if model_layout == "NL" else settings.tflite_layout


register_exporter(
    Exporter(
        "tflite",
        ("fp32", "fp16", "int8", "dynamic-int8"),
        write_tflite,
        select=_configured,
        layout=_layout,
        batch=1,  # litert-torch fixes the input shape at the sample's
    )
)
