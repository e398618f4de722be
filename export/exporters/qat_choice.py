"""Post-training int8 or quantization-aware distillation, for any format's int8 file: PTQ scored against fp32
on the validation split; where asked (always, or over the budget), the file converted from the QAT-KD
program written beside it, fp32, PTQ and QAT-KD timed side by side, and one of the two kept (`_choose`)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.manifest import QatRecord
from export.exporters import ExportJob, QatProgram

__all__ = ["ptq_or_qat"]


def _val_accuracy(path: Path, x_val: np.ndarray, y_val: np.ndarray, backend: str) -> float:
    from export.parity import accuracy

    return round(accuracy(path, x_val, y_val, backend=backend), 4)


def _side_by_side(files: dict[str, Path], x1: np.ndarray, backend: str) -> dict:
    """Size and batch-1 p50 of fp32, PTQ and QAT-KD files, timed in turn on this machine: the median and
    the range of 3 rounds' p50s (µs)."""
    from benchmarks.machine import machine_facts
    from export.int8_layouts import p50_rounds_us

    rounds = p50_rounds_us(files, x1, backend=backend, rounds=3, runs=200)
    cpu = machine_facts()["cpu_model"]
    timing = f"{backend}, 1 pinned thread, batch 1, median [range] of 3 rounds of 200 runs on {cpu}"
    files_timed = {
        k: {
            "size_bytes": path.stat().st_size,
            "p50_us": round(float(np.median(rounds[k])), 2),
            "p50_range_us": [round(min(rounds[k]), 2), round(max(rounds[k]), 2)],
        }
        for k, path in files.items()
    }
    return {"timing": timing, "files": files_timed}


def ptq_or_qat(
    job: ExportJob,
    per_channel: bool,
    fp32: Path,
    x_val: np.ndarray,
    *,
    backend: str,
    write_qat: Callable[[QatProgram, Path], None],
) -> QatRecord:
    """The `quantization.qat` record of the PTQ file at `job.dst` (`x_val` in the file's layout); where
    `job.settings.qat` asks, the QAT-KD file `write_qat` writes replaces it when `_choose` says so."""
    from export._files import atomic_path

    q = job.settings.qat
    fp32_acc = _val_accuracy(fp32, x_val, job.y_val, backend)
    ptq_acc = _val_accuracy(job.dst, x_val, job.y_val, backend)
    drop = round(100 * (fp32_acc - ptq_acc), 2)
    record = dict(split="validation", fp32_accuracy=fp32_acc, ptq_accuracy=ptq_acc, ptq_drop_pts=drop)
    record.update(
        budget_pts=q.accuracy_budget, over_budget=drop > q.accuracy_budget, ran=False, shipped="ptq"
    )
    if q.when == "never" or (q.when == "over-budget" and not record["over_budget"]):
        return QatRecord(**record)
    trained = job.qat(per_channel)
    with tempfile.TemporaryDirectory(prefix="edgekd-qat-") as tmp:
        path = Path(tmp) / f"qat{job.dst.suffix}"
        write_qat(trained, path)
        record.update(ran=True, qat_accuracy=_val_accuracy(path, x_val, job.y_val, backend), **trained.done)
        record.update(_side_by_side({"fp32": fp32, "ptq": job.dst, "qat-kd": path}, x_val[:1], backend))
        record["shipped_reason"] = _choose(record)
        if record["shipped_reason"].startswith("QAT-KD"):
            record.update(shipped="qat-kd", parity_reference="the QAT-KD program in torch (fake-quantized)")
            with atomic_path(job.dst) as out:
                shutil.copyfile(path, out)
    return QatRecord(**record)


def _choose(record: dict) -> str:
    """Why QAT-KD or PTQ ships. Over the budget, the better accuracy (ties to QAT-KD: it was asked for);
    within it, QAT-KD also has to be no slower and no larger than PTQ (by `CLEAR_MARGIN`): an int8 file is
    there to be fast and small, and PT2E's QDQ can be neither in onnxruntime."""
    from export.int8_layouts import CLEAR_MARGIN

    qat, ptq = record["qat_accuracy"], record["ptq_accuracy"]
    if qat < ptq:
        return "PTQ: the better validation accuracy"
    if record["over_budget"]:
        return "QAT-KD: PTQ over the budget, QAT-KD at least as accurate"
    files = record["files"]
    slower = files["qat-kd"]["p50_us"] / files["ptq"]["p50_us"]
    larger = files["qat-kd"]["size_bytes"] / files["ptq"]["size_bytes"]
    if slower > 1 + CLEAR_MARGIN or larger > 1 + CLEAR_MARGIN:
        return f"PTQ: within the budget; QAT-KD's file is {slower:.2f}x its p50 and {larger:.2f}x its size"
    return "QAT-KD: at least as accurate, no slower, no larger"
