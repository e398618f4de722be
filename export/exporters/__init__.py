"""Exporters: one module per file format, which declares itself with `register_exporter(Exporter(...))`.

An exporter writes one file of a model at one precision from an `ExportJob`, and declares the facts the
export stage would otherwise branch on by format name: which of the configured precisions it writes for a
model, the input layout of its files and their fixed batch. edgekd's own (onnx, tflite, torch, pte) load on
the first lookup; a third party's module is named in the `edgekd.exporters` entry points.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from benchmarks.manifest import FileSettings
from toolkit.errors import InputError
from toolkit.extensions import EXPORTERS as _EXPORTERS

__all__ = ["Exporter", "ExportJob", "QatProgram", "register_exporter", "exporter_for", "EXPORTERS"]


@dataclass(frozen=True, kw_only=True)
class ExportJob:
    """Everything an exporter may use to write one file: the model, a sample input, the run's export
    settings (`toolkit.config.ExportConfig`), and the rows int8 calibration and accuracy budgets use."""

    name: str
    model: Any  # torch.nn.Module, in eval mode
    sample: Any  # torch.Tensor, one input row
    precision: str
    dst: Path
    settings: Any  # ExportConfig
    calib: np.ndarray  # normalized training rows for static int8
    x_val: np.ndarray
    y_val: np.ndarray
    per_channel: bool
    per_channel_reason: str
    work: Path  # scratch folder shared by one export (named float files that variants are made from)
    # Quantization-aware distillation, where the pipeline offers it (students): per_channel -> the student
    # trained once under fake quantization (every format's int8 file is converted from that one program).
    # The exporter decides whether to call it.
    qat: Callable[[bool], QatProgram] | None = None


class QatProgram(Protocol):
    """A student distilled again under a PT2E quantizer (the pipeline's: `toolkit.distill.qat`): the converted
    program, the quantizer, what was done (epochs, seconds, loss per epoch)."""

    @property
    def program(self) -> Any: ...

    @property
    def quantizer(self) -> Any: ...

    @property
    def done(self) -> dict: ...

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """The converted program's logits on all of `x` (a shipped QAT-KD file is checked against them)."""
        ...


def _configured(name: str, settings: Any, precisions: tuple[str, ...]) -> tuple[str, ...]:
    return precisions


def _model_layout(settings: Any, model_layout: str) -> str:
    return model_layout if model_layout == "NL" else "NCHW"


@dataclass(frozen=True)
class Exporter:
    """A file format edgekd writes: its name (a manifest format), the precisions it offers, and `write(job)`,
    which writes `job.dst` and returns its export/quantization settings (None for a plain float file).

    The rest are the format's facts, so no stage asks for a format by name: `select(name, settings,
    precisions)` narrows the precisions offered and configured for model `name` (say, by a setting of the
    format's own); `layout(settings, model_layout)` is the input layout of its files (`NL`, token ids, or an
    image layout); `batch` is the batch size its files are fixed at (None: dynamic)."""

    format: str
    precisions: tuple[str, ...]
    write: Callable[[ExportJob], FileSettings | None]
    requires: tuple[str, ...] = ()  # modules beyond torch it imports: checked before a run starts
    select: Callable[[str, Any, tuple[str, ...]], tuple[str, ...]] = _configured
    layout: Callable[[Any, str], str] = _model_layout
    batch: int | None = None
    reference_outputs: bool = True  # its outputs go in the bundle's reference.npz, for a board to compare

    def precisions_for(
        self, name: str, settings: Any, configured: tuple[str, ...] | list[str]
    ) -> tuple[str, ...]:
        """The precisions this format writes for model `name`, of those `configured` for it, in order."""
        return self.select(name, settings, tuple(p for p in configured if p in self.precisions))


# In `toolkit.extensions`, below the config, which checks `export.formats` against it.
EXPORTERS = _EXPORTERS


def register_exporter(exporter: Exporter) -> Exporter:
    """Register an exporter (the one line each exporter module runs)."""
    return EXPORTERS.register(exporter, name=exporter.format)


def exporter_for(fmt: str, precision: str) -> Exporter:
    """The exporter of `fmt`; ValueError when it does not offer `precision`."""
    exporter = EXPORTERS.get(fmt)
    if precision not in exporter.precisions:
        raise InputError(f"no exporter for format={fmt!r} precision={precision!r}")
    return exporter
