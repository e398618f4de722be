"""Post-training int8 against quantization-aware distillation (issue #39): for each seed, a KD student trained
from a finished run's teacher and cached logits, exported as TFLite and ONNX fp32 and int8 (PTQ), and
distilled again under fake quantization into a second int8 file of each format (QAT-KD, one training, export's
own functions); all scored on the test split, with QAT-KD's seconds against the KD run's.

    python studies/qat_kd.py RUN --arch cnn_student --kwargs '{"widths": [4, 8, 16]}' --epochs 3
        [--seeds 0,1,2] [--per-channel false] [--qat-epochs 2] [--out /tmp/qat-study]

RUN: a run whose distill/ holds teacher.pt and teacher_logits.npz or teacher_views.npz (its config gives the
data and KD settings; QAT-KD's targets are view 0 of stored views, as export's).
Prints one markdown row per seed and the mean.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml


def _edgekd(*args: str, check: bool = True) -> None:
    subprocess.run([sys.executable, "-m", "toolkit.cli.main", *args], check=check, stdout=subprocess.DEVNULL)


def _run(src: Path, out: Path, seed: int, a: argparse.Namespace, qat: str) -> dict:
    cfg = yaml.safe_load((src / "config.yaml").read_text())
    cfg["seed"] = seed
    cfg["student"].update(arch=a.arch, kwargs=json.loads(a.kwargs), epochs=a.epochs)
    cfg["distill"]["seeds"] = [seed]
    cfg["distill"]["scratch_control"] = False
    e = cfg["export"]
    e.update(formats=["tflite", "onnx"], precisions=["fp32", "int8"], teacher_precisions=["fp32"])
    e.update(per_channel=a.per_channel, tflite_int8_search=False, onnx_int8_search=False, sensitivity=False)
    e["qat"] = {"when": qat, "epochs": a.qat_epochs}
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return cfg


def _scores(run: Path, a: argparse.Namespace) -> dict:
    """Per format: test accuracy of fp32, PTQ and QAT-KD files (the student's, written by export and by
    export's own QAT-KD functions: one training for both formats), PTQ's top-1 agreement, QAT-KD seconds."""
    import numpy as np
    import torch

    from benchmarks.outputs import run_file
    from export import tflite
    from export.onnx_qat import export_onnx_qat
    from toolkit.config import load_config
    from toolkit.distill.checkpoints import load_checkpoint
    from toolkit.distill.context import load_splits
    from toolkit.distill.qat import QatSettings, qat_distill
    from toolkit.distill.targets import cached_train_logits
    from toolkit.rundir import RunDir

    rc = load_config(run / "config.yaml")
    splits = load_splits(rc)
    model, _, _ = load_checkpoint(run / "distill" / "student_kd.pt")
    logits = cached_train_logits(RunDir(run), "teacher")
    s = QatSettings(a.qat_epochs, rc.export.qat.lr, rc.export.qat.batch_size, rc.distill.temperature,
                    rc.distill.alpha, rc.seed)  # fmt: skip
    quantizer = tflite.int8_quantizer(per_channel=a.per_channel is True, qat=True)
    x_test, bundle = splits.normalize(splits.test_x), run / "bundle"
    program, done = qat_distill(
        model, quantizer, splits.model_input(splits.train_x), splits.train_y, logits, s
    )
    sample = torch.from_numpy(x_test[:1])
    io = rc.export.tflite_int8_io if sample.is_floating_point() else "float"  # as the PTQ file
    tflite.write_tflite_int8(program, sample, bundle / "student_kd_qat_int8.tflite", quantizer, io=io)
    export_onnx_qat(program, sample, bundle / "student_kd_qat_int8.onnx")
    out = {"qat_s": done["seconds"]}
    for fmt, backend in (("tflite", "litert"), ("onnx", "onnxruntime")):
        top1 = {
            k: run_file(bundle / f"student_kd{k}.{fmt}", x_test, backend=backend).argmax(1)
            for k in ("", "_int8", "_qat_int8")
        }
        acc = {k: float(np.mean(v == splits.test_y)) for k, v in top1.items()}
        out[fmt] = {"fp32": acc[""], "ptq": acc["_int8"], "qat": acc["_qat_int8"]}
        out[fmt]["ptq_agreement"] = float(np.mean(top1["_int8"] == top1[""]))
    return out


def one_seed(src: Path, root: Path, seed: int, a: argparse.Namespace) -> dict:
    run = root / f"s{seed}"
    _run(src, run, seed, a, "never")
    (run / "distill").mkdir(exist_ok=True)
    for name in ("teacher.pt", "teacher_logits.npz", "teacher_views.npz"):
        if (src / "distill" / name).exists():
            shutil.copyfile(src / "distill" / name, run / "distill" / name)
    _edgekd("distill", str(run / "config.yaml"), "--out", str(run))
    _edgekd("export", str(run), check=False)  # a PTQ file that misses parity is kept, and scored here
    summary = json.loads((run / "distill" / "summary.json").read_text())["student_kd"]
    return {"seed": seed, "kd_s": summary["train_seconds"], **_scores(run, a)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run", type=Path)
    p.add_argument("--arch", default="mobilenetv2_tiny")
    p.add_argument("--kwargs", default="{}", help="the student's kwargs, JSON")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--qat-epochs", type=int, default=2)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--per-channel", default="false", choices=["true", "false"])
    p.add_argument("--out", type=Path, default=Path("/tmp/qat-study"))
    a = p.parse_args()
    a.per_channel = {"true": True, "false": False}[a.per_channel]
    rows = [one_seed(a.run, a.out, int(s), a) for s in a.seeds.split(",")]
    (a.out / "rows.json").write_text(json.dumps(rows, indent=1))
    print(f"{a.arch}, {a.epochs} KD epochs, per_channel={a.per_channel}, QAT-KD {a.qat_epochs} epochs")
    print("| seed | format | fp32 | PTQ int8 (Δ) | PTQ top-1 agreement | QAT-KD int8 (Δ) | KD s | QAT-KD s |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for fmt in ("tflite", "onnx"):
        cells = [dict(r[fmt], seed=r["seed"], kd_s=r["kd_s"], qat_s=r["qat_s"]) for r in rows]
        mean = {k: sum(c[k] for c in cells) / len(cells) for k in ("fp32", "ptq", "ptq_agreement", "qat")}
        mean.update(seed="mean", kd_s=sum(c["kd_s"] for c in cells) / len(cells))
        mean["qat_s"] = sum(c["qat_s"] for c in cells) / len(cells)
        for c in [*cells, mean]:
            print(_row(c, fmt))


def _row(r: dict, fmt: str) -> str:
    """One markdown row: test accuracies (Δ vs fp32, points), PTQ's agreement with fp32, seconds."""
    pct = {k: 100 * r[k] for k in ("fp32", "ptq", "qat")}
    delta = {k: f"{pct[k]:.2f} % ({pct[k] - pct['fp32']:+.2f})" for k in ("ptq", "qat")}
    cells = [str(r["seed"]), fmt, f"{pct['fp32']:.2f} %", delta["ptq"], f"{100 * r['ptq_agreement']:.2f} %"]
    cells += [delta["qat"]]
    cells += [f"{r['kd_s']:.0f}", f"{r['qat_s']:.0f}"]
    return "| " + " | ".join(cells) + " |"


if __name__ == "__main__":
    main()
