"""Exporters: one module per file format, which declares itself with `register_exporter(Exporter(...))`.

An exporter writes one file of a model at one precision from an `ExportJob`. edgekd's own (onnx, tflite,
torch, pte) load on the first lookup; a third party's module is named in the `edgekd.exporters` entry points.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from toolkit.errors import InputError
from toolkit.extensions import EXPORTERS as _EXPORTERS

__all__ = ["Exporter", "ExportJob", "QatProgram", "register_exporter", "exporter_for", "EXPORTERS"]


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class Exporter:
    """A file format edgekd writes: its name (a manifest format), the precisions it offers, and `write(job)`,
    which writes `job.dst` and returns its export/quantization settings (None for a plain float file)."""

    format: str
    precisions: tuple[str, ...]
    write: Callable[[ExportJob], dict | None]
    requires: tuple[str, ...] = ()  # modules beyond torch it imports: checked before a run starts


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
