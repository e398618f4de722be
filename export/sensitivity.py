"""Per-layer int8 sensitivity; static int8 that keeps the costliest layers float to meet an accuracy budget.

Sensitivity is measured one layer at a time: only that Conv/Gemm/MatMul is quantized (every other one is
excluded), so each record is the accuracy that layer alone costs, inputs and outputs quantized included.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.manifest import AccuracyBudget, FileSettings, LayerSensitivity
from export._files import atomic_path
from export.parity import accuracy
from export.quantize import preprocess, quantizable_nodes, quantize_static
from toolkit.errors import InputError

__all__ = ["BudgetedInt8", "layer_sensitivity", "quantize_with_max_drop", "accuracy"]


@dataclass(frozen=True)
class BudgetedInt8:
    """What `quantize_with_max_drop` did: the kept file's settings (its `accuracy_budget` among them) and the
    layers it ranked, costliest first (none when all-int8 met the budget)."""

    settings: FileSettings
    layers: list[LayerSensitivity]


def _prepared(src: str | Path, tmpdir: str) -> Path:
    """The pre-quantization pass once, with every quantizable node named so it can be excluded."""
    import onnx

    pre = preprocess(src, Path(tmpdir) / "prepared.onnx")
    model = onnx.load(str(pre))
    unnamed = [(i, n) for i, n in enumerate(model.graph.node) if not n.name]
    for i, node in unnamed:
        node.name = f"edgekd_{node.op_type}_{i}"
    if unnamed:
        onnx.save(model, str(pre))
    return pre


def _layers(src: Path, tmpdir: str, reader, x, y, base: float, quant: dict) -> list[LayerSensitivity]:
    if "nodes_to_exclude" in quant:
        raise InputError(
            "nodes_to_exclude is chosen here, layer by layer; pass the other quantize_static options"
        )
    nodes = quantizable_nodes(src)
    names = [name for name, _ in nodes]
    out = []
    for name, op in nodes:
        dst = Path(tmpdir) / "one_layer.onnx"
        quantize_static(src, dst, reader, nodes_to_exclude=[n for n in names if n != name], **quant)
        acc = accuracy(dst, x, y)
        out.append(LayerSensitivity(node=name, op_type=op, accuracy=acc, drop=round(100 * (base - acc), 4)))
    return sorted(out, key=lambda r: r.drop, reverse=True)


def layer_sensitivity(
    src: str | Path, reader, x: np.ndarray, y: np.ndarray, **quant: Any
) -> list[LayerSensitivity]:
    """One record per Conv/Gemm/MatMul node, most costly first; `quant` goes to `quantize_static`."""
    with tempfile.TemporaryDirectory(prefix="edgekd-sens-") as tmpdir:
        pre = _prepared(src, tmpdir)
        return _layers(pre, tmpdir, reader, x, y, accuracy(src, x, y), quant)


def quantize_with_max_drop(
    src: str | Path,
    dst: str | Path,
    reader,
    x: np.ndarray,
    y: np.ndarray,
    *,
    max_accuracy_drop: float,
    **quant: Any,
) -> BudgetedInt8:
    """Static int8 with the most sensitive layers kept float, one more at a time, until accuracy on
    (`x`, `y`) is within `max_accuracy_drop` points of `src`. When even all-float layers miss it, `dst` is
    the closest file found and `met` is False. Returns the settings (layers kept float, accuracies) and the
    layers ranked."""
    if max_accuracy_drop < 0:
        raise InputError(f"max_accuracy_drop must be >= 0 accuracy points, got {max_accuracy_drop}")
    base = accuracy(src, x, y)

    def met(acc: float) -> bool:
        return 100 * (base - acc) <= max_accuracy_drop

    with tempfile.TemporaryDirectory(prefix="edgekd-maxdrop-") as tmpdir:
        pre = _prepared(src, tmpdir)
        trial, best_path = Path(tmpdir) / "trial.onnx", Path(tmpdir) / "best.onnx"
        settings = quantize_static(pre, trial, reader, **quant)
        all_int8 = accuracy(trial, x, y)
        best = (all_int8, [], settings)
        shutil.copyfile(trial, best_path)
        ranked = [] if met(all_int8) else _layers(pre, tmpdir, reader, x, y, base, quant)
        kept: list[str] = []
        for record in ranked:
            if met(best[0]):
                break
            kept.append(record.node)  # greedy: the next costliest layer alone goes back to float
            settings = quantize_static(pre, trial, reader, nodes_to_exclude=list(kept), **quant)
            if (acc := accuracy(trial, x, y)) > best[0]:
                best = (acc, list(kept), settings)
                shutil.copyfile(trial, best_path)
        with atomic_path(dst) as tmp:
            shutil.copyfile(best_path, tmp)
    acc, kept_float, settings = best
    budget = AccuracyBudget(
        met=met(acc),
        max_accuracy_drop=max_accuracy_drop,
        fp32_accuracy=base,
        all_int8_accuracy=all_int8,
        accuracy=acc,
        drop=round(100 * (base - acc), 4),
        kept_float=kept_float,
    )
    return BudgetedInt8(settings=settings.merged(accuracy_budget=budget), layers=ranked)
