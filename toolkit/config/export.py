"""`export:`: the formats, precisions and quantization of the exported files."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    model_validator,
)

from benchmarks.manifest import Precision
from toolkit.config.fields import Strict, registered
from toolkit.errors import InputError
from toolkit.extensions import EXPORTERS

# Text runs' export settings when the config does not set them: PT2E dynamic int8 TFLite files with an
# embedding do not load in ai_edge_litert; MiniLM's dynamic int8 ONNX file needs per-channel weights and
# float embeddings to reach the 97 % agreement bar.
# Static int8 is calibrated on training ids; its TFLite file keeps the embedding table float (PT2E
# quantizes the convolutions and the head, not the lookup).
TEXT_EXPORT_DEFAULTS = {
    "formats": ("onnx", "tflite"),
    "precisions": ("fp32", "fp16", "int8", "dynamic-int8"),
    "teacher_precisions": ("fp32", "dynamic-int8"),
    "tflite_precisions": ("fp32", "fp16", "int8"),
    "onnx_dynamic_per_channel": True,
}


ExportFormat = Annotated[str, AfterValidator(registered(EXPORTERS))]


class QatConfig(Strict):
    """Quantization-aware distillation of the students' TFLite int8 files (toolkit/distill/qat.py)."""

    # never; over-budget: where post-training int8 loses more than `accuracy_budget` points against fp32 on
    # the validation split; always. The file that scores better on the validation split is shipped.
    when: Literal["never", "over-budget", "always"] = "never"
    accuracy_budget: float = Field(0.5, ge=0)  # points
    epochs: int = Field(2, ge=1)
    lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(128, ge=1)


class ExportConfig(Strict):
    # "torch" saves a .pt2 ExportedProgram: the teacher's own framework, benchmarked where torch exists.
    formats: list[ExportFormat] = Field(default_factory=lambda: ["onnx", "tflite", "torch"])
    # ONNX and TFLite files of the students; .pt2 is fp32 only. int8 = static, calibrated, full-integer.
    precisions: list[Precision] = Field(
        default_factory=lambda: ["fp32", "fp16", "int8", "dynamic-int8"], min_length=1
    )
    # .pt2 (torch eager reference) for the teacher only, or for every model.
    torch_models: Literal["teacher", "all"] = "teacher"
    # The teacher is the baseline, in every precision (is a quantized teacher enough?).
    teacher_precisions: list[Precision] = Field(
        default_factory=lambda: ["fp32", "fp16", "int8", "dynamic-int8"], min_length=1
    )
    # The precisions TFLite files may have (None: every one listed here). Text models: ai_edge_litert
    # refuses PT2E dynamic-int8 TFLite files whose embedding table the converter quantized asymmetrically.
    tflite_precisions: list[Precision] | None = Field(None, min_length=1)
    # The scratch student's precisions. None: the KD student's, so that it is a candidate like any student
    # (when distillation does not pay, its int8 file is the one to ship); [fp32] keeps it a bare control.
    scratch_precisions: list[Precision] | None = Field(None, min_length=1)
    calibration_samples: int = Field(128, ge=1)
    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    opset: int = Field(18, ge=7)
    onnx_exporter: Literal["dynamo", "legacy"] = "dynamo"  # legacy: TorchScript-based, opsets below 18
    simplify: bool = False  # onnxslim (or onnxruntime's basic optimizer) on each fp32 ONNX file
    # Shipped ONNX files get short internal tensor names and no node names (inputs/outputs keep theirs):
    # in a 24 k-param int8 file the exporter's names are ~13 % of the bytes. Quantization and the
    # sensitivity report work on the named float graph, so the layer names they report are its names.
    onnx_compact_names: bool = True
    onnx_int8_format: Literal["QDQ", "QOperator"] = "QDQ"
    # Static int8 layouts (export/int8_layouts.py). ONNX: QDQ/QOperator × per-channel/per-tensor × U8S8/S8S8;
    # TFLite: per-channel/per-tensor × int8/float io. Each is timed against the fp32 file on this machine and
    # the fastest within parity kept; the layouts tried go into the manifest. auto: only where the default
    # layout runs slower than fp32 here (a short timing pass); true: always; false: never.
    onnx_int8_search: Literal["auto"] | bool = "auto"
    tflite_int8_search: Literal["auto"] | bool = "auto"
    # Dynamic int8 ONNX weights per output channel (text defaults: true; MiniLM's agreement with fp32 rose
    # from 96.5 % to 97.1 % with it). Token-id models whose int8 embedding table costs agreement below the
    # dynamic-int8 tolerance on the validation rows get a file with the embeddings float.
    onnx_dynamic_per_channel: bool = False
    # int8 weight scales per output channel (ONNX and TFLite static int8). auto: per channel when the
    # model has grouped/depthwise convs (whose channel ranges differ widely), else per tensor, which
    # saves a scale, a zero point and an int32 bias per channel: 12 % of a 24 k-param int8 file.
    per_channel: Literal["auto"] | bool = "auto"
    tflite_layout: Literal["NCHW", "NHWC"] = "NCHW"
    tflite_int8_io: Literal["int8", "float"] = "int8"  # full-integer TFLite: int8 or float input/output
    sensitivity: bool = True  # per-layer int8 sensitivity of the KD student's ONNX file (validation split)
    # Keep the most sensitive layers of int8 ONNX files float until accuracy is within this many points.
    max_accuracy_drop: float | None = Field(None, ge=0)
    qat: QatConfig = Field(default_factory=QatConfig)

    @model_validator(mode="after")
    def _qat_takes_nchw(self):
        if self.qat.when != "never" and self.tflite_layout != "NCHW":
            raise InputError("export.qat trains the NCHW program; use tflite_layout: NCHW with qat")
        return self

    @model_validator(mode="after")
    def _exporter_fits_opset(self):
        if self.onnx_exporter == "dynamo" and self.opset < 18:
            raise InputError(
                f"the dynamo exporter writes opset 18 or newer; use onnx_exporter: legacy for {self.opset}"
            )
        return self
