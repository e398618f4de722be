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
    from benchmarks.manifest import LayoutSearch
    from export._files import sha256_file
    from tests.conftest import assert_kept_the_fastest_passing
    from tests.test_models import student_macs_by_hand, teacher_macs_by_hand

    manifest = json.loads((tiny_run / "bundle" / "manifest.json").read_text())
    assert manifest["failures"] == []
    assert manifest["input"]["layout"] == "NCHW" and manifest["input"]["shape"] == [None, 1, 28, 28]
    assert manifest["test_data"]["n"] == 300 and len(manifest["labels"]) == 10
    for m in manifest["models"]:
        assert sha256_file(tiny_run / "bundle" / m["file"]) == m["sha256"]
        assert m["parity"]["n"] == 300
        by_hand = teacher_macs_by_hand() if m["name"] == "teacher" else student_macs_by_hand()
        assert m["macs"] == by_hand and m["params"] > 0
        if m["precision"] == "fp32":
            assert m["parity"]["top1_agreement"] >= 0.99 and m["parity"]["max_abs_diff"] < 1e-3, m
            assert m["parity"]["passed"]
    int8 = {m["file"]: m for m in manifest["models"] if m["precision"] == "int8"}
    for name in ("student_kd_int8.onnx", "student_kd_int8.tflite"):  # auto: searched only if slower here
        q = int8[name]["quantization"]
        if search := q.get("layout_search"):
            assert (
                search["trigger"].startswith("auto: the default layout")
                and q["per_channel_reason"] == "layout search"
            )
            assert_kept_the_fastest_passing(LayoutSearch.model_validate(search))
        else:
            assert q["per_channel"] is False and q["per_channel_reason"].startswith("auto: no grouped convs")
    assert int8["student_kd_int8.onnx"]["quantization"]["format"] in ("QDQ", "QOperator")
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


def test_results_jsonl_has_one_measured_record_per_file_and_round(tiny_run):
    records = [json.loads(line) for line in (tiny_run / "bench" / "results.jsonl").read_text().splitlines()]
    assert len(records) == 2 * len(EXPECTED_FILES)  # tiny.yaml: repeats 2
    assert sorted(r["round"] for r in records) == sorted([0, 1] * len(EXPECTED_FILES))
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


def test_benchmark_accuracy_is_the_parity_accuracy_of_each_file(tiny_run):
    """The board path (uint8 test images + the manifest's preprocessing) scores each file as export did."""
    manifest = json.loads((tiny_run / "bundle" / "manifest.json").read_text())
    parity = {m["file"]: m["parity"] for m in manifest["models"]}
    fp32 = {m["file"] for m in manifest["models"] if m["precision"] == "fp32"}
    records = [json.loads(line) for line in (tiny_run / "bench" / "results.jsonl").read_text().splitlines()]
    first = {}
    for r in records:
        first.setdefault(r["file"].rsplit("/", 1)[-1], r)
    assert set(first) == set(parity)
    for name, r in first.items():
        p = parity[name]
        assert r["n_accuracy"] == p["n"] == 300
        # batch-1 vs batched runs may round one logit differently: at most one of 300 images moves
        assert abs(r["accuracy"] - p["accuracy"]) <= 1 / 300 + 1e-9, (name, r["accuracy"], p["accuracy"])
        if name in fp32:  # a float copy of the model scores as torch does
            assert abs(r["accuracy"] - p["torch_accuracy"]) <= 1e-3, name


def test_every_record_reproduces_the_export_machines_outputs(tiny_run):
    """The bundle ships each ONNX/TFLite file's outputs on its first test images; the bench accuracy pass
    compares them (here the same machine: within the file's own parity tolerance)."""
    manifest = json.loads((tiny_run / "bundle" / "manifest.json").read_text())
    ref = manifest["reference_outputs"]
    shipped = {m["file"] for m in manifest["models"] if m["format"] != "torch"}
    assert set(ref["arrays"]) == shipped and ref["rows"] == 300  # the tiny test split has 300 images
    records = [json.loads(line) for line in (tiny_run / "bench" / "results.jsonl").read_text().splitlines()]
    for r in records:
        check = r["output_check"]
        if r["format"] == "torch":
            assert check is None
            continue
        assert check["rows"] == 300 and check["passed"], (r["file"], check)
        assert check["tolerance"] == next(m["parity"]["tolerance"] for m in manifest["models"]
                                          if r["file"].endswith(m["file"]))  # fmt: skip
        if r["precision"] == "fp32":
            assert check["max_abs_diff"] <= 1e-4, (r["file"], check)
    report = (tiny_run / "report" / "report.md").read_text()
    section = report[report.index("## Outputs against the export machine") :]
    assert "| Max abs diff |" in section and "**OUTPUTS DIFFER**" not in section
    assert sum(line.startswith("| native |") for line in section.splitlines()) == len(shipped)


def test_a_file_that_gives_other_outputs_fails_its_output_check(tiny_run, tmp_path):
    """Reference outputs that are not the file's (the teacher's, relabelled as the student's) fail the check,
    even though the file and its accuracy are untouched."""
    import shutil

    import numpy as np

    from benchmarks.bundle import run_suite
    from benchmarks.files import sha256_file
    from benchmarks.suite import Suite

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_run / "bundle", bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    ref = manifest["reference_outputs"]
    with np.load(bundle / ref["file"]) as data:
        arrays = dict(data)
    arrays[ref["arrays"]["student_kd.onnx"]] = arrays[ref["arrays"]["teacher.onnx"]]
    np.savez(bundle / ref["file"], **arrays)
    ref["sha256"] = sha256_file(bundle / ref["file"])
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    suite = Suite(name="t", threads=[1], batch_sizes=[1], repeats=1, warmup=0, min_runs=3, min_time_s=0)
    run = run_suite(bundle / "student_kd.onnx", tmp_path / "r.jsonl", suite)
    (record,) = run.records
    check = record.output_check
    assert not check["passed"] and check["max_abs_diff"] > 1e-3 and check["rows"] == 300, check


def _failing_config(tmp_path):
    import yaml

    from tests.conftest import TINY

    cfg = yaml.safe_load(TINY.read_text())
    cfg["export"] = {
        "formats": ["onnx"],
        "precisions": ["fp32", "fp16"],
        "teacher_precisions": ["fp32", "fp16"],
        "scratch_precisions": ["fp32"],
        "calibration_samples": 32,
        "sensitivity": False,
    }
    cfg["bench"] = dict(cfg["bench"], min_runs=5, min_time_s=0.0, repeats=1)
    path = tmp_path / "failing.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_run_with_a_failed_export_and_a_parity_miss_measures_the_rest_and_exits_1(
    tmp_path, monkeypatch, capsys
):
    """One file cannot be written, one misses its tolerance: both in `failures`, the rest measured, exit 1."""
    from export.parity import TOLERANCES
    from tests.conftest import edgekd_main
    from toolkit.errors import ExportError
    from toolkit.pipeline import export_stage

    write_one = export_stage._export_one

    def student_fp16_breaks(job, fmt, *args):
        if (job.name, job.precision) == ("student_kd", "fp16"):
            raise ExportError("student_kd_fp16.onnx: converter crashed (made to fail by the test)")
        return write_one(job, fmt, *args)

    monkeypatch.setattr(export_stage, "_export_one", student_fp16_breaks)
    monkeypatch.setitem(TOLERANCES, "fp16", {"max_abs_diff": 1e-9, "top1_agreement": 0.98})
    out = tmp_path / "run"
    code, err = edgekd_main(monkeypatch, capsys, "run", _failing_config(tmp_path), "--out", out)
    assert code == 1, err
    assert err.strip().splitlines()[-1] == (
        f"error: {out / 'bundle'}: 2 file(s) failed: 1 failed to export, 1 missed their parity tolerance "
        "(kept for inspection) (see above)"
    )
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    # files that could not be written first, then those written outside their tolerance
    assert [(f["name"], f["precision"], f.get("file")) for f in manifest["failures"]] == [
        ("student_kd", "fp16", None),
        ("teacher", "fp16", "teacher_fp16.onnx"),
    ]
    shipped = ["teacher.onnx", "teacher_fp16.onnx", "student_kd.onnx", "student_scratch.onnx"]
    assert sorted(m["file"] for m in manifest["models"]) == sorted(shipped)
    assert not (out / "bundle" / "student_kd_fp16.onnx").exists()
    records = [json.loads(line) for line in (out / "bench" / "results.jsonl").read_text().splitlines()]
    assert sorted(r["file"].rsplit("/", 1)[-1] for r in records) == sorted(shipped)
    report = (out / "report" / "report.md").read_text()
    assert "**FAILED**" in report and "teacher" in report
    # The export stage alone, re-run on the same directory, says the same.
    code, err = edgekd_main(monkeypatch, capsys, "export", out)
    assert code == 1 and "2 file(s) failed: 1 failed to export, 1 missed" in err.strip().splitlines()[-1]
