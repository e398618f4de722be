"""onnxruntime's static-int8 layouts searched on this machine: QDQ or QOperator, per-channel or per-tensor
weights, U8S8 or S8S8. Each is written, checked against the fp32 file's top-1 on the validation rows, and
timed against it (one pinned thread, interleaved rounds); the fastest that passes is kept."""

from __future__ import annotations

import itertools
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np

from export import quantize
from export.parity import TOLERANCES

__all__ = ["LAYOUTS", "search_int8_layout"]

# (quant_format, per_channel, activations, weights); U8U8 is left out: it ran 1.3× slower than U8S8 on
# every file tried (studies/ort_int8_layouts.py), and S8U8 has no onnxruntime kernels.
LAYOUTS = [
    (fmt, per_channel, act, "int8")
    for fmt, per_channel, act in itertools.product(("QDQ", "QOperator"), (True, False), ("uint8", "int8"))
]


def _name(fmt: str, per_channel: bool, act: str) -> str:
    return f"{fmt} {'per-channel' if per_channel else 'per-tensor'} {'U8S8' if act == 'uint8' else 'S8S8'}"


def _p50s(files: dict[str, Path], x1: np.ndarray, *, rounds: int, runs: int) -> dict[str, float]:
    """Median over `rounds` of each file's p50 (µs); every file once per round, in a new order."""
    from benchmarks.backends import load_backend
    from benchmarks.profile import pinned_cores, unprofiled_p50_us

    ort = load_backend("onnxruntime")
    loaded = {k: ort.load(p, threads=1) for k, p in files.items()}
    seen: dict[str, list[float]] = {k: [] for k in files}
    with pinned_cores(1):
        for r in range(rounds):
            for k in random.Random(r).sample(list(files), len(files)):
                h = loaded[k]
                feed = ort.prepare(h, x1)
                seen[k].append(unprofiled_p50_us(lambda h=h, f=feed: ort.invoke(h, f), runs=runs, warmup=50))
    return {k: float(np.median(v)) for k, v in seen.items()}


def _agreement(path: Path, x: np.ndarray, reference: np.ndarray) -> float:
    from benchmarks.backends import load_backend

    ort = load_backend("onnxruntime")
    out = ort.run(ort.load(path, threads=1), x)
    return float(np.mean(out.argmax(1) == reference.argmax(1)))


def _write_layouts(fp32: Path, folder: Path, reader, method: str, x_val: np.ndarray, reference: np.ndarray):
    """Every layout of `fp32` in `folder`: (files by name, their settings, their validation agreement)."""
    files, settings, agree = {}, {}, {}
    for fmt, per_channel, act, weight in LAYOUTS:
        name, path = _name(fmt, per_channel, act), folder / f"{len(files)}.onnx"
        options = dict(per_channel=per_channel, activation_type=act, weight_type=weight, quant_format=fmt)
        settings[name] = quantize.quantize_static(fp32, path, reader, method=method, **options)
        agree[name] = _agreement(path, x_val, reference)
        files[name] = path
    return files, settings, agree


def _search_record(p50: dict[str, float], agree: dict[str, float], kept: str, timing: str) -> dict:
    from benchmarks.machine import machine_facts

    need = TOLERANCES["int8"]["top1_agreement"]
    facts = machine_facts()
    tried = [
        {
            "layout": k,
            "p50_us": round(p50[k], 2),
            "top1_agreement_val": round(agree[k], 4),
            "passed": agree[k] >= need,
        }
        for k in sorted(agree, key=p50.get)
    ]
    return {
        "cpu": facts["cpu_model"],
        "int8_dot_product": facts["int8_dot_product"],
        "fp32_p50_us": round(p50["fp32"], 2),
        "kept": kept,
        "faster_than_fp32": p50[kept] < p50["fp32"],
        "timing": timing,
        "tried": tried,
    }


def search_int8_layout(
    fp32: Path, dst: Path, reader, x_val: np.ndarray, *, method: str, rounds: int = 3, runs: int = 300
) -> dict:
    """Write every layout of `fp32`, keep at `dst` the fastest whose top-1 agreement with `fp32` on `x_val`
    meets the int8 tolerance; its settings, with `layout_search` saying what was tried and measured."""
    from benchmarks.backends import load_backend

    ort = load_backend("onnxruntime")
    reference = ort.run(ort.load(fp32, threads=1), x_val)
    with tempfile.TemporaryDirectory(prefix="edgekd-int8-") as tmp:
        files, settings, agree = _write_layouts(fp32, Path(tmp), reader, method, x_val, reference)
        p50 = _p50s({"fp32": fp32, **files}, x_val[:1], rounds=rounds, runs=runs)
        passing = [k for k in agree if agree[k] >= TOLERANCES["int8"]["top1_agreement"]]
        if not passing:
            raise ValueError(
                f"{fp32}: no int8 layout reaches the int8 top-1 agreement on the validation rows"
            )
        kept = min(passing, key=p50.get)
        shutil.copyfile(files[kept], dst)
    timing = f"1 pinned thread, median of {rounds} rounds of {runs} runs"
    return dict(settings[kept], layout_search=_search_record(p50, agree, kept, timing))
