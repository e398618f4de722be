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
    from benchmarks.outputs import run_file

    qat = {"when": "always", "epochs": 1, "batch_size": 64}
    run, output, files = _export(tiny_run, tmp_path, qat, formats=["onnx", "tflite"])
    assert "teacher.tflite" in files and "qat" not in (files["teacher.tflite"].get("quantization") or {})
    x_val_n = 200
    for name in ("student_kd_int8.tflite", "student_scratch_int8.tflite", "student_kd_int8.onnx"):
        entry = files[name]
        q = entry["quantization"]["qat"]
        assert q["ran"] and q["method"] == "qat-kd" and q["epochs"] == 1 and q["seconds"] > 0
        assert len(q["loss_per_epoch"]) == 1 and np.isfinite(q["loss_per_epoch"][0])
        for key in ("fp32_accuracy", "ptq_accuracy", "qat_accuracy"):
            assert 0.1 < q[key] <= 1 and round(q[key] * x_val_n) == pytest.approx(q[key] * x_val_n, abs=1e-6)
        timed = q["files"]
        cheap = all(timed["qat-kd"][k] <= 1.05 * timed["ptq"][k] for k in ("p50_us", "size_bytes"))
        qat_ships = q["qat_accuracy"] >= q["ptq_accuracy"] and (q["over_budget"] or cheap)
        assert q["shipped"] == ("qat-kd" if qat_ships else "ptq")
        assert q["shipped_reason"].startswith("QAT-KD" if qat_ships else "PTQ")
        assert q["ptq_drop_pts"] == pytest.approx(100 * (q["fp32_accuracy"] - q["ptq_accuracy"]), abs=0.01)
        assert entry["parity"]["passed"] and sha256_file(run / "bundle" / name) == entry["sha256"]
        # fp32, PTQ and QAT-KD side by side: sizes on disk, p50s timed in turn
        assert timed["ptq" if q["shipped"] == "ptq" else "qat-kd"]["size_bytes"] == entry["size_bytes"]
        assert timed["fp32"]["size_bytes"] > 2 * timed["ptq"]["size_bytes"]
        for t in timed.values():
            assert t["p50_range_us"][0] <= t["p50_us"] <= t["p50_range_us"][1] and t["p50_us"] > 0
        backend = "litert" if name.endswith(".tflite") else "onnxruntime"
        out = run_file(run / "bundle" / name, np.zeros((2, 1, 28, 28), np.float32), backend=backend)
        assert out.shape == (2, 10)
    assert "QAT-KD (1 epochs" in output and "shipped" in output
    # one QAT-KD training per student serves both formats: the same loss curve in both records
    onnx_q, tflite_q = (files[f"student_kd_int8.{ext}"]["quantization"] for ext in ("onnx", "tflite"))
    assert onnx_q["qat"]["loss_per_epoch"] == tflite_q["qat"]["loss_per_epoch"]
    if onnx_q["qat"]["shipped"] == "qat-kd":  # PT2E's QDQ scheme, said as such
        assert onnx_q["activations"] == "int8" and onnx_q["calibration"] is None


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


def _qat_record(fields: dict | None):
    """The manifest's typed QAT record of `fields` (the split and the PTQ drop filled in)."""
    from benchmarks.manifest import QatRecord

    if fields is None:
        return None
    drop = round(100 * (fields["fp32_accuracy"] - fields["ptq_accuracy"]), 2)
    return QatRecord.model_validate({"split": "validation", "ptq_drop_pts": drop, **fields})


def test_the_report_says_which_int8_method_made_each_shipped_file():
    from toolkit.report.int8_method import int8_method_lines
    from toolkit.report.rows import ReportRow

    def row(model: str, qat: dict | None) -> ReportRow:
        return ReportRow(
            model, "student", "tflite", "int8", "litert", 1, 1, 1, "local", "native", "native: this CPU",
            None, None, None, None, None, None, None, 0.01, 0.01, 0.01, None, None, qat=_qat_record(qat),
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


def test_the_report_puts_fp32_ptq_and_qat_kd_side_by_side_where_qat_kd_ran():
    from toolkit.report.blocks import blocks_to_markdown
    from toolkit.report.int8_method import int8_method_blocks
    from toolkit.report.rows import ReportRow

    timed = {"size_bytes": 2048, "p50_us": 9.87, "p50_range_us": [9.5, 10.25]}
    q = dict(
        fp32_accuracy=0.9, ptq_accuracy=0.89, qat_accuracy=0.9012, budget_pts=0.5, over_budget=True,
        ran=True, shipped="qat-kd", epochs=2, seconds=86.2, timing="LiteRT, 1 pinned thread",
        files={"fp32": dict(timed, size_bytes=8192), "ptq": timed, "qat-kd": dict(timed, p50_us=9.5)},
    )  # fmt: skip
    row = ReportRow(
        "student_kd", "student", "tflite", "int8", "litert", 1, 1, 1, "local", "native", "native: this CPU",
        None, None, None, None, None, None, None, 0.01, 0.01, 0.01, None, None, qat=_qat_record(q),
    )  # fmt: skip
    text = blocks_to_markdown(int8_method_blocks([row]))
    assert "| student_kd tflite | 90.00 % | 8.0 KiB | 9.9 [9.5–10.2] | 89.00 % (-1.00) | 2.0 KiB |" in text
    assert "| 90.12 % (+0.12) | 2.0 KiB | 9.5 [9.5–10.2] | 2 epochs, 86 s | QAT-KD |" in text
    assert "the three files timed at export: LiteRT, 1 pinned thread." in text
    assert "Shipped:" not in text  # the table says it; no line repeats it


@pytest.mark.parametrize("per_channel", [True, False])
def test_onnx_file_of_a_pt2e_program_stores_int8_weights_and_computes_what_the_program_does(
    tmp_path, per_channel
):
    import onnx
    import torch
    from onnx import numpy_helper
    from torch import nn
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from benchmarks.outputs import run_file
    from export.onnx_qat import export_onnx_qat
    from export.tflite import int8_quantizer

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)
    )
    model[0].weight.data[0] *= 20  # one channel's range far wider than the rest: per-channel scales differ
    x = torch.randn(64, 1, 28, 28)
    batch = torch.export.Dim("batch", min=1, max=4096)
    graph = torch.export.export(model.eval(), (x,), dynamic_shapes=({0: batch},)).module()
    prepared = prepare_pt2e(graph, int8_quantizer(per_channel=per_channel))
    prepared(x)
    program = move_exported_model_to_eval(convert_pt2e(prepared, fold_quantize=False))

    dst = export_onnx_qat(program, x[:1], tmp_path / "q.onnx")
    weights = [
        numpy_helper.to_array(t) for t in onnx.load(str(dst)).graph.initializer if t.dims[:1] in ([8], [10])
    ]
    assert {w.dtype.name for w in weights if w.ndim >= 2} == {"int8"}  # conv and linear weights folded
    assert not [
        n for n in onnx.load(str(dst)).graph.node if n.op_type == "QuantizeLinear" and "weight" in n.input[0]
    ]
    with torch.no_grad():
        expected = program(x).numpy()
    got = run_file(dst, x.numpy(), backend="onnxruntime")
    assert got.shape == (64, 10) and np.abs(got - expected).max() < 0.05 * np.abs(expected).max()
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.95


def test_within_the_budget_qat_kd_ships_only_if_no_slower_and_no_larger():
    from export.exporters.qat_choice import _choose

    timed = {"ptq": {"p50_us": 30.0, "size_bytes": 1000}, "qat-kd": {"p50_us": 90.0, "size_bytes": 3400}}
    record = dict(ptq_accuracy=0.75, qat_accuracy=0.758, over_budget=False, files=timed)
    assert _choose(record) == "PTQ: within the budget; QAT-KD's file is 3.00x its p50 and 3.40x its size"
    assert _choose(dict(record, over_budget=True)).startswith("QAT-KD: PTQ over the budget")
    same = {"ptq": timed["ptq"], "qat-kd": {"p50_us": 31.0, "size_bytes": 1000}}
    assert _choose(dict(record, files=same)) == "QAT-KD: at least as accurate, no slower, no larger"
    assert _choose(dict(record, qat_accuracy=0.74, over_budget=True)) == "PTQ: the better validation accuracy"
