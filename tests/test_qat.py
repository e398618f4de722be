"""Quantization-aware distillation: the tiny run's students distilled again under PT2E fake quantization
from its cached teacher logits, written as TFLite int8 files, and the better file on validation shipped."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

pytest.importorskip("litert_torch")


def _export(tiny_run, tmp_path, qat: dict, **export):
    from toolkit.cli.main import app

    run = tmp_path / "run"
    shutil.copytree(tiny_run / "distill", run / "distill")
    cfg = yaml.safe_load((tiny_run / "config.yaml").read_text())
    cfg["export"].update(formats=["tflite"], precisions=["int8"], teacher_precisions=["fp32"], qat=qat)
    cfg["export"]["scratch_precisions"] = ["int8"]
    cfg["export"].update(export)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(app, ["export", str(run)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    manifest = json.loads((run / "bundle" / "manifest.json").read_text())
    return run, result.output, {m["file"]: m for m in manifest["models"]}


def test_qat_kd_trains_each_student_quantized_and_ships_the_better_file(tiny_run, tmp_path):
    from benchmarks.files import sha256_file
    from export.parity import run_file

    run, output, files = _export(tiny_run, tmp_path, {"when": "always", "epochs": 1, "batch_size": 64})
    assert "teacher.tflite" in files and "qat" not in (files["teacher.tflite"].get("quantization") or {})
    x_val_n = 200
    for name in ("student_kd_int8.tflite", "student_scratch_int8.tflite"):
        entry = files[name]
        q = entry["quantization"]["qat"]
        assert q["ran"] and q["method"] == "qat-kd" and q["epochs"] == 1 and q["seconds"] > 0
        assert len(q["loss_per_epoch"]) == 1 and np.isfinite(q["loss_per_epoch"][0])
        for key in ("fp32_accuracy", "ptq_accuracy", "qat_accuracy"):
            assert 0.1 < q[key] <= 1 and round(q[key] * x_val_n) == pytest.approx(q[key] * x_val_n, abs=1e-6)
        assert q["shipped"] == ("qat-kd" if q["qat_accuracy"] >= q["ptq_accuracy"] else "ptq")
        assert q["ptq_drop_pts"] == pytest.approx(100 * (q["fp32_accuracy"] - q["ptq_accuracy"]), abs=0.01)
        assert entry["parity"]["passed"] and sha256_file(run / "bundle" / name) == entry["sha256"]
        out = run_file(run / "bundle" / name, np.zeros((2, 1, 28, 28), np.float32), backend="litert")
        assert out.shape == (2, 10)
    assert "QAT-KD (1 epochs" in output and "shipped" in output


def test_over_budget_qat_runs_only_where_post_training_int8_costs_more_than_the_budget(tiny_run, tmp_path):
    _, output, files = _export(tiny_run, tmp_path, {"when": "over-budget", "accuracy_budget": 100.0})
    q = files["student_kd_int8.tflite"]["quantization"]["qat"]
    assert not q["ran"] and not q["over_budget"] and q["shipped"] == "ptq" and "qat_accuracy" not in q
    assert "QAT-KD" not in output


def test_nhwc_files_are_scored_in_their_own_layout_and_qat_asks_for_nchw(tiny_run, tmp_path):
    """An NHWC student's int8 file gets its validation rows transposed (PTQ within a few points of fp32),
    and a config asking QAT-KD of NHWC files is refused in one line."""
    from toolkit.config import RunConfig

    _, _, files = _export(tiny_run, tmp_path, {"when": "never"}, tflite_layout="NHWC")
    q = files["student_kd_int8.tflite"]["quantization"]["qat"]
    assert files["student_kd_int8.tflite"]["layout"] == "NHWC" and not q["ran"]
    # 200 validation rows of a 1-epoch student: one row is half a point
    assert abs(q["ptq_drop_pts"]) <= 5.0 and q["fp32_accuracy"] > 0.2 and q["ptq_accuracy"] > 0.2
    with pytest.raises(ValueError, match="export.qat trains the NCHW program; use tflite_layout: NCHW"):
        RunConfig.model_validate({"export": {"tflite_layout": "NHWC", "qat": {"when": "always"}}})


def test_the_report_says_which_int8_method_made_each_shipped_file():
    from toolkit.report.int8_method import int8_method_lines
    from toolkit.report.rows import ReportRow

    def row(model: str, qat: dict | None) -> ReportRow:
        return ReportRow(
            model, "student", "tflite", "int8", "litert", 1, 1, 1, "local", "native", "native: this CPU",
            None, None, None, None, None, None, None, 0.01, 0.01, 0.01, None, None, qat=qat,
        )  # fmt: skip

    record = dict(
        fp32_accuracy=0.9, ptq_accuracy=0.89, budget_pts=0.5, over_budget=True, ran=False, shipped="ptq"
    )
    ran = dict(record, ran=True, qat_accuracy=0.9012, epochs=2, seconds=86.2, shipped="qat-kd")
    within = dict(record, ptq_accuracy=0.899, over_budget=False)
    lines = int8_method_lines(
        [row("student_kd", ran), row("student_scratch", record), row("x", within), row("y", None)]
    )
    assert lines == [
        "**student_kd tflite int8**: validation fp32 90.00 %, PTQ 89.00 % (-1.00), QAT-KD 90.12 % (+0.12) "
        "(2 epochs, 86 s). Shipped: QAT-KD.",
        "**student_scratch tflite int8**: validation fp32 90.00 %, PTQ 89.00 % (-1.00): over the 0.5 pt "
        "budget (`export.qat.when: over-budget` runs QAT-KD). Shipped: PTQ.",
    ]
