"""Post-training int8 against quantization-aware distillation (issue #39): for each seed, a KD student trained
from a finished run's teacher and cached logits, exported as TFLite fp32 and int8 (PTQ), and distilled again
under fake quantization into a second int8 file (QAT-KD, export's own functions); all three scored on the
test split, with QAT-KD's seconds against the KD run's.

    python studies/qat_kd.py RUN --arch cnn_student --kwargs '{"widths": [4, 8, 16]}' --epochs 3
        [--seeds 0,1,2] [--per-channel false] [--qat-epochs 2] [--out /tmp/qat-study]

RUN: a run whose distill/ holds teacher.pt and teacher_logits.npz (its config gives the data and KD settings).
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


def _edgekd(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "toolkit.cli.main", *args], check=True, stdout=subprocess.DEVNULL)


def _run(src: Path, out: Path, seed: int, a: argparse.Namespace, qat: str) -> dict:
    cfg = yaml.safe_load((src / "config.yaml").read_text())
    cfg["seed"] = seed
    cfg["student"].update(arch=a.arch, kwargs=json.loads(a.kwargs), epochs=a.epochs)
    cfg["distill"]["seeds"] = [seed]
    cfg["distill"]["scratch_control"] = False
    e = cfg["export"]
    e.update(formats=["tflite"], precisions=["fp32", "int8"], teacher_precisions=["fp32"])
    e.update(per_channel=a.per_channel, tflite_int8_search=False, sensitivity=False)
    e["qat"] = {"when": qat, "epochs": a.qat_epochs}
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return cfg


def _models(run: Path) -> dict:
    return {m["file"]: m for m in json.loads((run / "bundle" / "manifest.json").read_text())["models"]}


def _qat_file(run: Path, dst: Path, per_channel: bool, a: argparse.Namespace) -> tuple[float, float]:
    """The run's KD student distilled again under PT2E fake quantization into a TFLite int8 file, as export's
    QAT-KD does it (the same functions); returns (test accuracy, seconds)."""
    import numpy as np
    import torch

    from export import tflite
    from export.parity import run_file
    from toolkit.config import load_config
    from toolkit.distill.checkpoints import load_checkpoint
    from toolkit.distill.qat import QatSettings, qat_distill
    from toolkit.distill.service import load_splits

    rc = load_config(run / "config.yaml")
    splits = load_splits(rc)
    model, _, _ = load_checkpoint(run / "distill" / "student_kd.pt")
    with np.load(run / "distill" / "teacher_logits.npz") as z:
        logits = z["logits"]
    s = QatSettings(a.qat_epochs, rc.export.qat.lr, rc.export.qat.batch_size, rc.distill.temperature,
                    rc.distill.alpha, rc.seed)  # fmt: skip
    quantizer = tflite.int8_quantizer(per_channel=per_channel, qat=True)
    x_test = splits.normalize(splits.test_x)
    program, done = qat_distill(
        model, quantizer, splits.model_input(splits.train_x), splits.train_y, logits, s
    )
    tflite.write_tflite_int8(program, torch.from_numpy(x_test[:1]), dst, quantizer)
    accuracy = float(np.mean(run_file(dst, x_test, backend="litert").argmax(1) == splits.test_y))
    return accuracy, done["seconds"]


def one_seed(src: Path, root: Path, seed: int, a: argparse.Namespace) -> dict:
    run = root / f"s{seed}"
    _run(src, run, seed, a, "never")
    (run / "distill").mkdir(exist_ok=True)
    for name in ("teacher.pt", "teacher_logits.npz"):
        shutil.copyfile(src / "distill" / name, run / "distill" / name)
    _edgekd("distill", str(run / "config.yaml"), "--out", str(run))
    _edgekd("export", str(run))
    files = _models(run)
    per_channel = files["student_kd_int8.tflite"]["quantization"]["per_channel"]  # as the PTQ file
    qat_accuracy, qat_seconds = _qat_file(run, run / "student_kd_qat_int8.tflite", per_channel, a)
    summary = json.loads((run / "distill" / "summary.json").read_text())["student_kd"]
    record = files["student_kd_int8.tflite"]["quantization"]["qat"]
    return {
        "seed": seed,
        "fp32": files["student_kd.tflite"]["parity"]["accuracy"],
        "ptq": files["student_kd_int8.tflite"]["parity"]["accuracy"],
        "qat": qat_accuracy,
        "kd_s": summary["train_seconds"],
        "qat_s": qat_seconds,
        "val": (record["fp32_accuracy"], record["ptq_accuracy"]),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run", type=Path)
    p.add_argument("--arch", default="mobilenetv2_tiny")
    p.add_argument("--kwargs", default="{}", help="the student's kwargs, JSON")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--qat-epochs", type=int, default=2)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--per-channel", default="false", choices=["auto", "true", "false"])
    p.add_argument("--out", type=Path, default=Path("/tmp/qat-study"))
    a = p.parse_args()
    a.per_channel = {"true": True, "false": False}.get(a.per_channel, "auto")
    rows = [one_seed(a.run, a.out, int(s), a) for s in a.seeds.split(",")]
    (a.out / "rows.json").write_text(json.dumps(rows, indent=1))
    print(f"{a.arch}, {a.epochs} KD epochs, per_channel={a.per_channel}, QAT-KD {a.qat_epochs} epochs")
    print("| seed | fp32 | PTQ int8 (Δ) | QAT-KD int8 (Δ) | KD s | QAT-KD s | val fp32/PTQ |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("fp32", "ptq", "qat", "kd_s", "qat_s")}
    for r in [*rows, dict(mean, seed="mean", val=())]:
        print(_row(r))


def _row(r: dict) -> str:
    """One markdown row: test accuracies (Δ vs fp32, points), seconds, validation accuracies."""
    pct = {k: 100 * r[k] for k in ("fp32", "ptq", "qat")}
    cells = [str(r["seed"]), f"{pct['fp32']:.2f} %"]
    cells += [f"{pct[k]:.2f} % ({pct[k] - pct['fp32']:+.2f})" for k in ("ptq", "qat")]
    cells += [
        f"{r['kd_s']:.0f}",
        f"{r['qat_s']:.0f}",
        "/".join(f"{100 * v:.2f}" for v in r["val"]),
    ]
    return "| " + " | ".join(cells) + " |"


if __name__ == "__main__":
    main()
