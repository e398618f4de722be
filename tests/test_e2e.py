"""The whole pipeline, in-process through the CLI, on a few hundred real Fashion-MNIST images."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.conftest import FASHION_MNIST

pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(
    not FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist not installed (make data)"
)

QUANTIZED = ("", "_fp16", "_int8", "_dynamic_int8")
EXPECTED_FILES = {
    *(f"{m}{q}.{ext}" for m in ("teacher", "student_kd") for q in QUANTIZED for ext in ("onnx", "tflite")),
    "student_scratch.onnx",
    "student_scratch.tflite",
    "teacher.pt2",
    "student_kd.pt2",
    "student_scratch.pt2",
}


def test_stages_write_their_files(tiny_run):
    for name in ("teacher", "student_kd", "student_scratch"):
        assert (tiny_run / "distill" / f"{name}.pt").is_file()
    assert {
        p.name for p in (tiny_run / "bundle").glob("*.*") if p.suffix in (".onnx", ".tflite", ".pt2")
    } == EXPECTED_FILES
    assert not list(tiny_run.rglob("*partial*"))
    for f in ("report.md", "results.csv", "tradeoff.png"):
        assert (tiny_run / "report" / f).stat().st_size > 0


def test_manifest_describes_and_checks_every_file(tiny_run):
    from export._files import sha256_file

    manifest = json.loads((tiny_run / "bundle" / "manifest.json").read_text())
    assert manifest["failures"] == []
    assert manifest["input"]["layout"] == "NCHW" and manifest["input"]["shape"] == [None, 1, 28, 28]
    assert manifest["test_data"]["n"] == 300 and len(manifest["labels"]) == 10
    for m in manifest["models"]:
        assert sha256_file(tiny_run / "bundle" / m["file"]) == m["sha256"]
        assert m["parity"]["n"] == 300
        assert m["macs"] == {"teacher": 30_537_728}.get(m["name"], 1_919_872) and m["params"] > 0
        if m["precision"] == "fp32":
            assert m["parity"]["top1_agreement"] >= 0.99 and m["parity"]["max_abs_diff"] < 1e-3, m
            assert m["parity"]["passed"]
    int8 = {m["file"]: m for m in manifest["models"] if m["precision"] == "int8"}
    assert int8["student_kd_int8.onnx"]["quantization"]["format"] == "QDQ"
    assert int8["student_kd_int8.tflite"]["quantization"]["calibration_samples"] == 32
    fp32_size = next(m["size_bytes"] for m in manifest["models"] if m["file"] == "student_kd.onnx")
    assert int8["student_kd_int8.onnx"]["size_bytes"] < fp32_size
    sens = int8["student_kd_int8.onnx"]["quantization"]["sensitivity"]
    assert sens["split"] == "validation" and len(sens["layers"]) == 4  # 3 convs + the linear head
    assert {r["op_type"] for r in sens["layers"]} == {"Conv", "Gemm"}
    by_file = {m["file"]: m for m in manifest["models"]}
    assert by_file["student_kd_dynamic_int8.onnx"]["quantization"]["mode"] == "dynamic"
    assert by_file["student_kd_fp16.tflite"]["quantization"]["weights"] == "float16"
    for m in manifest["models"]:
        assert m["layout"] == "NCHW" and m["parity"]["passed"], m["file"]
        if m["format"] == "tflite":
            assert m["parity"]["runtimes"]["ai_edge_litert"] == "ok"
            assert m["parity"]["runtimes"]["tflite_runtime"] in ("not installed", "ok") or m["parity"][
                "runtimes"
            ]["tflite_runtime"].startswith(("rejects:", "cannot import"))


def test_results_jsonl_has_one_measured_record_per_file(tiny_run):
    records = [json.loads(line) for line in (tiny_run / "bench" / "results.jsonl").read_text().splitlines()]
    assert len(records) == len(EXPECTED_FILES)
    for r in records:
        assert r["latency"]["p50"] > 0 and r["latency"]["count"] >= 20 and r["load_ms"] > 0
        assert 0.0 <= r["accuracy"] <= 1.0 and r["n_accuracy"] == 300
        assert r["peak_rss_mb"] > 0 and r["file_size_bytes"] > 0
        assert r["backend"] == {"onnx": "onnxruntime", "tflite": "litert", "torch": "torch"}[r["format"]]
        assert r["target"]["kind"] == "native" and r["machine"]["cpu_model"]
    teacher = next(r for r in records if r["model"] == "teacher" and r["format"] == "onnx")
    student = next(r for r in records if r["model"] == "student_kd" and r["file"].endswith("student_kd.onnx"))
    assert student["file_size_bytes"] * 10 < teacher["file_size_bytes"]


def test_report_table_lists_every_variant(tiny_run):
    text = (tiny_run / "report" / "report.md").read_text()
    for name in ("teacher", "student_kd", "student_scratch"):
        assert name in text
    assert "int8" in text and "tradeoff.png" in text


def test_each_stage_reruns_alone(tiny_run):
    from toolkit.cli.main import app

    results = tiny_run / "bench" / "results.jsonl"
    before = len(results.read_text().splitlines())
    r = CliRunner().invoke(app, ["bench", str(tiny_run), "--min-runs", "5", "--min-time", "0"])
    assert r.exit_code == 0, r.output
    assert len(results.read_text().splitlines()) == 2 * before  # appended, nothing lost
    r = CliRunner().invoke(app, ["report", str(tiny_run)])
    assert r.exit_code == 0 and "report.md" in r.output
