"""Which onnxruntime static-int8 layout is fastest on this CPU (issue #38): every layout of a run's fp32 ONNX
files, timed against the fp32 file in interleaved rounds, with accuracy and top-1 agreement.

    python studies/ort_int8_layouts.py RUN [--models teacher,student_kd] [--rounds 3] [--runs 3000]

Layouts: QDQ or QOperator × per-channel or per-tensor weights × U8S8, S8S8 or U8U8 (activations, weights),
calibrated on the rows and with the method the run's export used. One pinned core, one thread.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.backends import load_backend
from benchmarks.outputs import run_file, top1_agreement
from benchmarks.profile import unprofiled_p50_us
from export import quantize
from toolkit.config import load_config
from toolkit.data import ArrayCalibrationReader
from toolkit.distill.context import load_splits
from toolkit.pipeline.export_stage import _calibration_rows
from toolkit.rundir import RunDir

LAYOUTS = list(itertools.product(("QDQ", "QOperator"), (True, False), ("U8S8", "S8S8", "U8U8")))
TYPES = {"U8S8": ("uint8", "int8"), "S8S8": ("int8", "int8"), "U8U8": ("uint8", "uint8")}


def _files(run: RunDir, model: str, calib: np.ndarray, method: str, work: Path) -> dict[str, Path]:
    fp32 = run.bundle / f"{model}.onnx"
    files = {"fp32": fp32}
    for fmt, per_channel, types in LAYOUTS:
        act, weight = TYPES[types]
        name = f"{fmt} {'per-channel' if per_channel else 'per-tensor'} {types}"
        dst = work / f"{model}-{fmt}-{per_channel}-{types}.onnx"
        reader = ArrayCalibrationReader(calib, input_name="input", batch_size=32)
        quantize.quantize_static(fp32, dst, reader, method=method, per_channel=per_channel,
                                 activation_type=act, weight_type=weight, quant_format=fmt)  # fmt: skip
        files[name] = dst
    return files


def _scores(path: Path, x: np.ndarray, y: np.ndarray, ref: np.ndarray | None):
    out = run_file(path, x, backend="onnxruntime")
    agree = top1_agreement(out, ref) if ref is not None else 1.0
    return top1_agreement(out, y), agree, out


def _p50s(files: dict[str, Path], x1: np.ndarray, rounds: int, runs: int) -> dict[str, float]:
    ort = load_backend("onnxruntime")
    handles = {k: ort.load(p, threads=1) for k, p in files.items()}
    seen: dict[str, list[float]] = {k: [] for k in files}
    for r in range(rounds):  # every layout once per round, in a new order: drift hits them all alike
        order = list(files)
        random.Random(r).shuffle(order)
        for k in order:
            h = handles[k]
            feed = ort.prepare(h, x1)
            seen[k].append(unprofiled_p50_us(lambda h=h, f=feed: ort.invoke(h, f), runs=runs, warmup=200))
    return {k: float(np.median(v)) for k, v in seen.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--models", default="teacher,student_kd")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3000)
    args = ap.parse_args()
    run = RunDir(args.run)
    cfg = load_config(run.config)
    splits = load_splits(cfg)
    calib = splits.normalize(splits.train_x[_calibration_rows(len(splits.train_y), cfg)])
    x, y = splits.normalize(splits.test_x), splits.test_y
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            files = _files(run, model, calib, cfg.export.calibration_method, Path(tmp))
            p50 = _p50s(files, x[:1], args.rounds, args.runs)
            acc0, _, ref = _scores(files["fp32"], x, y, None)
            print(f"\n{model} (fp32: p50 {p50['fp32']:.1f} µs, accuracy {acc0:.2%})")
            print("| layout | p50 µs | vs fp32 | accuracy | Δ points | top-1 agreement |")
            print("|---|---:|---:|---:|---:|---:|")
            for name in sorted(files, key=p50.get):
                acc, agree, _ = _scores(files[name], x, y, ref)
                print(f"| {name} | {p50[name]:.1f} | {p50['fp32'] / p50[name]:.2f}× | {acc:.2%} | "
                      f"{(acc - acc0) * 100:+.2f} | {agree:.4f} |")  # fmt: skip


if __name__ == "__main__":
    main()
