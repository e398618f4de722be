"""ONNX files as model zoos hold them (IR 3/4, initializers listed as inputs, opsets 7-12) made fit to
quantize: initializers dropped from the graph inputs, the opset converted up where quantization needs it."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from export._files import atomic_path, failure_reason
from export.onnx import onnx_opset
from toolkit.errors import ExportError

__all__ = [
    "PER_CHANNEL_OPSET",
    "MIN_QUANT_OPSET",
    "short_names",
    "real_inputs",
    "drop_initializer_inputs",
    "normalized_copy",
    "convert_opset",
    "quantization_source",
]

# DequantizeLinear has a per-channel `axis` from opset 13; below it onnxruntime writes invalid models.
PER_CHANNEL_OPSET = 13
# onnxruntime's quantizers convert files below opset 10 to 11 themselves (unrecorded) and fuse dynamic
# quantization only above 10; converting here instead puts the conversion in the manifest.
MIN_QUANT_OPSET = 11
_REASON_CHARS = 160  # a converter's reason inside a one-line message


def short_names(names: Iterable[str], limit: int = 3) -> str:
    """`'a', 'b', 'c' and 197 more`: a list of names bounded for a one-line message."""
    names = list(names)
    shown = ", ".join(repr(n) for n in names[:limit])
    return f"{shown} and {len(names) - limit} more" if len(names) > limit else shown or "none"


def _reason(exc: BaseException) -> str:
    text = failure_reason(exc)
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"


def real_inputs(graph) -> list[str]:
    """Names of the graph inputs that no initializer backs: what a caller has to feed."""
    weights = {t.name for t in graph.initializer}
    return [i.name for i in graph.input if i.name not in weights]


def drop_initializer_inputs(model) -> int:
    """Remove graph inputs that name an initializer; returns how many. IR < 4 required them, and as inputs
    they are overridable, so runtimes neither fold them nor quantizers treat them as weights."""
    graph = model.graph
    real = set(real_inputs(graph))
    keep = [i for i in graph.input if i.name in real]
    removed = len(graph.input) - len(keep)
    if removed:
        del graph.input[:]
        graph.input.extend(keep)
        model.ir_version = max(model.ir_version, 4)  # IR 3 requires every initializer among the inputs
    return removed


def normalized_copy(src: str | Path, dst: str | Path) -> int:
    """Copy `src` to `dst` with initializers dropped from its inputs (a byte copy when it lists none);
    returns how many were dropped."""
    import onnx

    model = onnx.load(str(src), load_external_data=False)
    removed = drop_initializer_inputs(model)
    with atomic_path(dst) as tmp:
        if removed:
            onnx.save(model, str(tmp))
        else:  # bytes as the user has them: the fp32 file's checksum stays the source's
            shutil.copyfile(src, tmp)
    return removed


def convert_opset(src: str | Path, dst: str | Path, opset: int) -> None:
    """Write `src` converted to default-domain `opset` with onnx's version converter; one-line
    `ExportError` naming the file when it cannot."""
    import onnx
    from onnx import helper, version_converter

    model = onnx.load(str(src))
    try:
        model = version_converter.convert_version(model, opset)
        # The converter keeps the old IR version, which a newer opset may not allow (13 needs IR 7).
        model.ir_version = max(model.ir_version, helper.find_min_ir_version_for(list(model.opset_import)))
    except Exception as e:  # the converter raises plain RuntimeError/ValidationError per adapter
        raise ExportError(f"{src}: cannot convert opset {onnx_opset(src)} to {opset}: {_reason(e)}") from e
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))


def quantization_source(src: str | Path, work: str | Path) -> tuple[Path, bool, str]:
    """(file to quantize, whether per-channel int8 is possible, why): `src` itself at opset >= 13, else a
    copy in `work` converted to 13 or, failing that, to 11 with per-tensor weights."""
    src, work = Path(src), Path(work)
    have = onnx_opset(src) or 0
    if have >= PER_CHANNEL_OPSET:
        return src, True, f"per-channel: opset {have} has per-channel Q/DQ"
    dst = work / f"{src.stem}_opset{PER_CHANNEL_OPSET}.onnx"
    try:
        convert_opset(src, dst, PER_CHANNEL_OPSET)
        return dst, True, f"per-channel: opset {have} converted to {PER_CHANNEL_OPSET}"
    except ExportError as e:
        failed = str(e).removeprefix(f"{src}: ")
    if have >= MIN_QUANT_OPSET:
        return src, False, f"per-tensor: per-channel needs opset {PER_CHANNEL_OPSET} and {failed}"
    dst = work / f"{src.stem}_opset{MIN_QUANT_OPSET}.onnx"
    convert_opset(src, dst, MIN_QUANT_OPSET)  # no opset onnxruntime quantizes well: the one-line error
    return dst, False, f"per-tensor: opset {have} converted to {MIN_QUANT_OPSET}; {failed}"
