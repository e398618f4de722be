"""Post-training int8 against quantization-aware distillation (issue #39): for each seed, a KD student trained
from a finished run's teacher and cached logits, exported twice as TFLite int8 (PTQ; QAT-KD), both scored on
the test split beside the fp32 file, with QAT-KD's seconds against the KD run's.

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


def one_seed(src: Path, root: Path, seed: int, a: argparse.Namespace) -> dict:
    ptq_run, qat_run = root / f"s{seed}-ptq", root / f"s{seed}-qat"
    _run(src, ptq_run, seed, a, "never")
    (ptq_run / "distill").mkdir(exist_ok=True)
    for name in ("teacher.pt", "teacher_logits.npz"):
        shutil.copyfile(src / "distill" / name, ptq_run / "distill" / name)
    _edgekd("distill", str(ptq_run / "config.yaml"), "--out", str(ptq_run))
    _edgekd("export", str(ptq_run))
    _run(src, qat_run, seed, a, "always")
    shutil.copytree(ptq_run / "distill", qat_run / "distill", dirs_exist_ok=True)
    _edgekd("export", str(qat_run))
    summary = json.loads((ptq_run / "distill" / "summary.json").read_text())["student_kd"]
    ptq, qat = _models(ptq_run), _models(qat_run)
    record = qat["student_kd_int8.tflite"]["quantization"]["qat"]
    return {
        "seed": seed,
        "fp32": ptq["student_kd.tflite"]["parity"]["accuracy"],
        "ptq": ptq["student_kd_int8.tflite"]["parity"]["accuracy"],
        "qat": qat["student_kd_int8.tflite"]["parity"]["accuracy"],
        "shipped": record["shipped"],
        "kd_s": summary["train_seconds"],
        "qat_s": record["seconds"],
        "val": (record["fp32_accuracy"], record["ptq_accuracy"], record["qat_accuracy"]),
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
    print(f"{a.arch}, {a.epochs} KD epochs, per_channel={a.per_channel}, QAT-KD {a.qat_epochs} epochs")
    print("| seed | fp32 | PTQ int8 (Δ) | QAT-KD int8 (Δ) | shipped | KD s | QAT-KD s | val fp32/PTQ/QAT |")
    print("| ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |")
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("fp32", "ptq", "qat", "kd_s", "qat_s")}
    for r in [*rows, dict(mean, seed="mean", shipped="", val=())]:
        print(_row(r))


def _row(r: dict) -> str:
    """One markdown row: test accuracies (Δ vs fp32, points), seconds, validation accuracies."""
    pct = {k: 100 * r[k] for k in ("fp32", "ptq", "qat")}
    cells = [str(r["seed"]), f"{pct['fp32']:.2f} %"]
    cells += [f"{pct[k]:.2f} % ({pct[k] - pct['fp32']:+.2f})" for k in ("ptq", "qat")]
    cells += [
        r["shipped"],
        f"{r['kd_s']:.0f}",
        f"{r['qat_s']:.0f}",
        "/".join(f"{100 * v:.2f}" for v in r["val"]),
    ]
    return "| " + " | ".join(cells) + " |"


if __name__ == "__main__":
    main()
