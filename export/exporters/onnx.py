"""ONNX files: fp32 from torch (dynamo or legacy exporter), fp16, dynamic int8 and static int8 (QDQ or
QOperator, calibrated, optionally within an accuracy budget) made from the named float file."""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmarks.manifest import FileSettings, Sensitivity
from export.exporters import Exporter, ExportJob, register_exporter

__all__ = ["write_onnx"]


def _onnx_fp32(job: ExportJob) -> Path:
    """The named float ONNX file every ONNX variant is made from (written once per model)."""
    from export.onnx import export_onnx, simplify_onnx

    e, dst = job.settings, job.work / f"{job.name}.onnx"
    if not dst.exists():
        export_onnx(job.model, job.sample, dst, opset=e.opset, exporter=e.onnx_exporter)
        if e.simplify:
            simplify_onnx(dst, dst)
    return dst


def write_onnx(job: ExportJob) -> FileSettings:
    """One ONNX file at `job.precision`; with compact names unless the settings keep the exporter's."""
    from export.onnx import strip_metadata

    settings = _write(job)
    if job.settings.onnx_compact_names:
        strip_metadata(job.dst, job.dst, compact_names=True)
    return settings.merged(compact_names=job.settings.onnx_compact_names)


def _write(job: ExportJob) -> FileSettings:
    from export import quantize
    from export._files import atomic_path

    e = job.settings
    fp32 = _onnx_fp32(job)
    if job.precision == "fp32":
        with atomic_path(job.dst) as tmp:
            shutil.copyfile(fp32, tmp)
        return FileSettings(exporter=e.onnx_exporter, opset=e.opset, simplified=e.simplify)
    if job.precision == "fp16":
        return quantize.convert_fp16(fp32, job.dst)
    if job.precision == "dynamic-int8":
        return _dynamic_int8(job, fp32)
    return _static_int8(job, fp32)


def _dynamic_int8(job: ExportJob, fp32: Path) -> FileSettings:
    """Dynamic int8; for token-id models whose int8 embedding table costs agreement with fp32 on the
    validation rows (below the dynamic-int8 tolerance), again with the embeddings kept float."""
    from benchmarks.outputs import agreement as top1_agreement_with
    from export import quantize
    from export.parity import TOLERANCES

    per_channel = job.settings.onnx_dynamic_per_channel
    settings = quantize.quantize_dynamic(fp32, job.dst, per_channel=per_channel)
    if job.x_val.dtype.kind not in "iu" or not len(job.x_val):
        return settings
    agreement = top1_agreement_with(job.dst, fp32, job.x_val, backend="onnxruntime")
    need = TOLERANCES["dynamic-int8"]["top1_agreement"]
    if agreement >= need:
        return settings
    settings = quantize.quantize_dynamic(fp32, job.dst, per_channel=per_channel, float_embeddings=True)
    why = (
        f"int8 embeddings: {agreement:.2%} top-1 agreement with fp32 on the validation rows, below {need:.0%}"
    )
    return settings.merged(embeddings_reason=why)


def _fixed_batch(path: Path) -> int | None:
    """The batch size the file's first input is fixed at; None when it is dynamic (images or token ids)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    first = next(i for i in graph.input if i.name not in weights)
    return first.type.tensor_type.shape.dim[0].dim_value or None


def _static_int8(job: ExportJob, fp32: Path) -> FileSettings:
    """Calibrated int8; within `max_accuracy_drop` (layers left float as needed) when the settings ask."""
    from toolkit.data import ArrayCalibrationReader

    e = job.settings
    # A model with a fixed batch (a user's .pt2 exported at batch 1) takes calibration batches of its size.
    batch = _fixed_batch(fp32) or 32
    reader = ArrayCalibrationReader(job.calib, input_name="input", batch_size=batch)
    quant = dict(method=e.calibration_method, quant_format=e.onnx_int8_format, per_channel=job.per_channel)
    if e.max_accuracy_drop is not None:
        from export.sensitivity import quantize_with_max_drop

        # Chosen on the validation split: the test split stays untouched for the parity table.
        r = quantize_with_max_drop(
            fp32, job.dst, reader, job.x_val, job.y_val, max_accuracy_drop=e.max_accuracy_drop, **quant
        )
        return r.settings.merged(sensitivity=Sensitivity(split="validation", layers=r.layers))
    from export.int8_layouts import int8_file, onnx_layouts

    default = f"{e.onnx_int8_format} {'per-channel' if job.per_channel else 'per-tensor'} U8S8"
    writers = onnx_layouts(fp32, reader, method=e.calibration_method)
    settings = int8_file(
        e.onnx_int8_search, fp32, job.dst, writers, default, job.x_val, backend="onnxruntime"
    )
    if e.sensitivity and job.name == "student_kd":
        from export.sensitivity import layer_sensitivity

        ranked = layer_sensitivity(fp32, reader, job.x_val, job.y_val, **quant)
        settings = settings.merged(sensitivity=Sensitivity(split="validation", layers=ranked))
    if job.qat is None:  # the pipeline offers quantization-aware distillation for students only
        return settings
    return _qat(job, settings, fp32)


def _qat(job: ExportJob, ptq: FileSettings, fp32: Path) -> FileSettings:
    """PTQ against fp32, and QAT-KD where asked (`qat_choice.py`); a shipped QAT-KD file is PT2E's
    QDQ (int8 activations and symmetric int8 weights, ranges learned in training, not calibrated)."""
    from export.exporters.qat_choice import ptq_or_qat
    from export.onnx import strip_metadata
    from export.onnx_qat import export_onnx_qat

    def write(trained, path: Path) -> None:
        export_onnx_qat(trained.program, job.sample, path, opset=job.settings.opset)
        if job.settings.onnx_compact_names:  # both files named as shipped before their sizes are recorded
            for named in (path, job.dst):  # (write_onnx names the PTQ file again: a no-op then)
                strip_metadata(named, named, compact_names=True)

    record = ptq_or_qat(job, ptq.per_channel, fp32, job.x_val, backend="onnxruntime", write_qat=write)
    if record.shipped != "qat-kd":
        return ptq.merged(qat=record)
    qdq = dict(format="QDQ", activations="int8", weights="int8", reduce_range=False, calibration=None)
    return ptq.merged(**qdq, reduce_range_reason="QAT-KD: PT2E's scheme", nodes_excluded=[], qat=record)


register_exporter(Exporter("onnx", ("fp32", "fp16", "int8", "dynamic-int8"), write_onnx))
