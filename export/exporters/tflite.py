"""TFLite files through litert-torch (no TensorFlow): fp32, fp16, dynamic int8 and full-integer static int8
(PT2E, calibrated), in NCHW or NHWC input layout."""

from __future__ import annotations

from export.exporters import Exporter, ExportJob, register_exporter

__all__ = ["write_tflite"]


def write_tflite(job: ExportJob) -> dict | None:
    """One TFLite file at `job.precision` (None for fp32: nothing beyond the format to record)."""
    import torch

    from export import tflite

    layout, args = job.settings.tflite_layout, (job.model, job.sample, job.dst)
    if job.precision == "fp32":
        tflite.export_tflite(*args, layout=layout)
        return None
    if job.precision == "fp16":
        return tflite.export_tflite_fp16(*args, layout=layout)
    if job.precision == "dynamic-int8":
        return tflite.export_tflite_dynamic_int8(*args, layout=layout)
    calib = (torch.from_numpy(c[None]) for c in job.calib)
    # token ids go in as they are: only the float logits out can be int8, and they stay float for text
    io = job.settings.tflite_int8_io if job.sample.is_floating_point() else "float"
    return tflite.export_tflite_int8(*args, calib, per_channel=job.per_channel, io=io, layout=layout)


register_exporter(Exporter("tflite", ("fp32", "fp16", "int8", "dynamic-int8"), write_tflite))
