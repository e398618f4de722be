"""Report: hand-made records and manifest → rows with exact ratios, Markdown, CSV and a PNG."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from toolkit.errors import DataError, RunDirError
from toolkit.report import ReportRow, build_report, build_rows, read_manifest, read_results

NATIVE = {"name": "host", "kind": "native", "label": "native"}
CONSTRAINED = {"name": "host-1cpu", "kind": "constrained", "label": "constrained local CPU"}


def record(model: str, fmt: str, precision: str, p50: float, size: int, acc: float | None, **kw: Any) -> dict:
    """One benchmark record as `benchmarks` writes it (only the numbers a test checks vary)."""
    rec = {
        "model": model,
        "role": "teacher" if model == "teacher" else "student",
        "file": f"{model}.{fmt}",
        "format": fmt,
        "precision": precision,
        "backend": "onnxruntime" if fmt == "onnx" else "litert",
        "target": NATIVE,
        "threads": 1,
        "batch_size": 1,
        "load_ms": 5.0,
        "first_run_ms": 2 * p50,
        "latency": {
            "count": 100,
            "mean": p50,
            "p50": p50,
            "p90": 1.2 * p50,
            "p99": 1.5 * p50,
            "stdev": 0.01,
            "min": 0.9 * p50,
            "max": 2 * p50,
            "cv": 0.01,
            "samples": [p50] * 3,
        },
        "throughput_ips": 1000.0 / p50,
        "peak_rss_mb": 80.0,
        "baseline_rss_mb": 60.0,
        "rss_increase_mb": 20.0,
        "file_size_bytes": size,
        "accuracy": acc,
        "n_accuracy": 1000 if acc is not None else None,
        "machine": {
            "cpu_model": "Test CPU 9000",
            "logical_cores": 4,
            "affinity_cores": 2,
            "arch": "x86_64",
            "python": "3.11.2",
            "versions": {"numpy": "2.1.0"},
        },
        "runtime_version": "1.20.1" if fmt == "onnx" else "1.2.0",
        "timestamp": "2025-01-01T00:00:00",
        "edgekd_version": "0.1.0",
        "warmup": 10,
        "protocol": {"min_runs": 100, "min_time_s": 2.0},
    }
    return {**rec, **kw}


def entry(name: str, fmt: str, precision: str, params: int, acc: float, *, passed: bool = True) -> dict:
    """One manifest model entry with its parity record."""
    return {
        "name": name,
        "role": "teacher" if name == "teacher" else "student",
        "arch": "cnn",
        "params": params,
        "file": f"{name}.{fmt}",
        "format": fmt,
        "precision": precision,
        "quantization": None,
        "size_bytes": 1,
        "sha256": "0" * 64,
        "parity": {
            "max_abs_diff": 1e-5,
            "mean_abs_diff": 1e-6,
            "top1_agreement": 0.995 if passed else 0.6,
            "accuracy": acc,
            "torch_accuracy": acc,
            "passed": passed,
            "n": 500,
        },
    }


RECORDS = [
    record("student_kd", "onnx", "int8", 0.08, 30_000, None),  # accuracy falls back to the manifest
    record("student_kd", "onnx", "fp32", 0.1, 100_000, 0.90),
    record("teacher", "onnx", "fp32", 1.0, 6_000_000, 0.91),
    record("student_kd", "tflite", "fp32", 0.2, 110_000, 0.90),  # no teacher tflite: no baseline
    record("student_kd", "onnx", "fp32", 0.3, 100_000, 0.90, target=CONSTRAINED),
    record("student_scratch", "onnx", "fp32", 0.1, 100_000, 0.88),
]
MANIFEST = {
    "models": [
        entry("teacher", "onnx", "fp32", 1_500_000, 0.91),
        entry("student_kd", "onnx", "fp32", 24_058, 0.90),
        entry("student_kd", "onnx", "int8", 24_058, 0.895),
        entry("student_kd", "tflite", "fp32", 24_058, 0.90),
        entry("student_scratch", "onnx", "fp32", 24_058, 0.88, passed=False),
    ],
    "labels": [str(i) for i in range(10)],
    "input": {"shape": [1, 1, 28, 28]},
}
SUMMARY = {
    "teacher": {"test_accuracy": 0.912, "params": 1_500_000},
    "student_kd": {"test_accuracy": 0.901, "params": 24_058},
    "student_scratch": {"test_accuracy": 0.881, "params": 24_058},
    "config": {"temperature": 4.0},
}


def write_run(run_dir: Path, records: list[dict] = RECORDS, *, summary: bool = True) -> Path:
    """Lay out bench/results.jsonl, bundle/manifest.json and (optionally) distill/summary.json."""
    for sub in ("bench", "bundle", "distill"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    (run_dir / "bench/results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run_dir / "bundle/manifest.json").write_text(json.dumps(MANIFEST))
    if summary:
        (run_dir / "distill/summary.json").write_text(json.dumps(SUMMARY))
    return run_dir


def rows_of(tmp_path: Path) -> list[ReportRow]:
    run = write_run(tmp_path)
    return build_rows(read_results(run / "bench/results.jsonl"), read_manifest(run / "bundle/manifest.json"))


def find(rows: list[ReportRow], model: str, fmt: str, precision: str, target: str = "host") -> ReportRow:
    key = (model, fmt, precision, target)
    (row,) = [r for r in rows if (r.model, r.format, r.precision, r.target_name) == key]
    return row


def test_ratios_against_teacher(tmp_path: Path) -> None:
    row = find(rows_of(tmp_path), "student_kd", "onnx", "fp32")
    assert row.speedup == 10.0
    assert row.size_ratio == 60.0
    assert row.accuracy_delta_pts == -1.0
    assert (row.params, row.top1_agreement, row.parity_passed) == (24_058, 0.995, True)


def test_teacher_row_is_the_baseline(tmp_path: Path) -> None:
    rows = rows_of(tmp_path)
    teacher = find(rows, "teacher", "onnx", "fp32")
    assert [r for r in rows if r.is_baseline] == [teacher]
    assert (teacher.speedup, teacher.size_ratio, teacher.accuracy_delta_pts) == (1.0, 1.0, 0.0)
    assert rows[0] == teacher  # sorted: onnx, onnxruntime, fp32, teacher first


@pytest.mark.parametrize(
    ("fmt", "target"), [("tflite", "host"), ("onnx", "host-1cpu")], ids=["other-format", "other-target"]
)
def test_row_without_baseline_has_no_ratios(tmp_path: Path, fmt: str, target: str) -> None:
    row = find(rows_of(tmp_path), "student_kd", fmt, "fp32", target)
    assert (row.speedup, row.size_ratio, row.accuracy_delta_pts, row.is_baseline) == (None, None, None, False)


def test_accuracy_falls_back_to_parity(tmp_path: Path) -> None:
    row = find(rows_of(tmp_path), "student_kd", "onnx", "int8")
    assert (row.accuracy, row.n_accuracy) == (0.895, 500)
    assert row.speedup == pytest.approx(12.5, rel=1e-12)
    assert row.size_ratio == 200.0
    assert row.accuracy_delta_pts == -1.5


def test_build_report_writes_markdown_csv_png(tmp_path: Path) -> None:
    result = build_report(write_run(tmp_path / "run"))
    out = tmp_path / "run/report"
    assert (result.markdown_path, result.csv_path, result.plot_path) == (
        out / "report.md",
        out / "results.csv",
        out / "tradeoff.png",
    )
    md = result.markdown_path.read_text()
    kd_row = (
        "| student_kd | onnx | fp32 | onnxruntime | 1 | native | 24,058 | 97.7 KiB | 90.00 | 99.50% "
        "| 0.100 | 0.120 | 0.150 | 10,000 | 80.0 | 10.00× | 60.0× | -1.00 |"
    )
    assert kd_row in md
    assert "| **teacher** | onnx | fp32 | onnxruntime | 1 | native | 1,500,000 | 5.72 MiB | 91.00 |" in md
    assert "| *constrained local CPU* |" in md
    assert "| 0.300 | 0.360 | 0.450 | 3,333 | 80.0 | – | – | – |" in md
    assert "**FAILED** (60.00%)" in md and "PARITY CHECK FAILED** for student_scratch onnx fp32" in md
    assert "![](tradeoff.png)" in md
    assert "**Best student:** student_kd (ONNX fp32, onnxruntime, 1 thread, native) is 10.00× faster" in md
    for fact in (
        "10 warm-up runs",
        "`min_runs`=100",
        "Test CPU 9000 (2 cores usable), x86_64; python 3.11.2, numpy 2.1.0",
        "onnxruntime 1.20.1",
        "litert 1.2.0",
        "1000/500 held-out test images",
        "## Training",
        "+2.00 points",
    ):
        assert fact in md, fact
    png = result.plot_path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    with open(result.csv_path, newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(RECORDS) == len(result.rows)
    key = ("student_kd", "onnx", "fp32", "host")
    (kd,) = [r for r in table if (r["model"], r["format"], r["precision"], r["target_name"]) == key]
    assert (kd["speedup"], kd["size_ratio"], kd["accuracy_delta_pts"]) == ("10.0", "60.0", "-1.0")
    assert table[-1]["speedup"] == ""  # tflite row: no baseline, empty cell


def test_out_dir_and_missing_summary(tmp_path: Path) -> None:
    result = build_report(write_run(tmp_path / "run", summary=False), out_dir=tmp_path / "elsewhere")
    assert result.markdown_path == tmp_path / "elsewhere/report.md"
    assert "## Training" not in result.markdown_path.read_text()
    assert not (tmp_path / "run/report").exists()


GOOD = json.dumps(RECORDS[0])
BAD_LINES = [
    ("{not json", "invalid benchmark record"),
    ("[1, 2]", "expected a JSON object, got list"),
    (json.dumps({k: v for k, v in RECORDS[0].items() if k != "latency"}), "field 'latency' must be dict"),
    (json.dumps({**RECORDS[0], "threads": "4"}), "field 'threads' must be int"),
    (json.dumps({**RECORDS[0], "latency": {"p50": 0.0, "p90": 1, "p99": 1}}), "latency.p50 must be positive"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES, ids=[m for _, m in BAD_LINES])
def test_malformed_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(f"{GOOD}\n\n{line}\n")
    with pytest.raises(ValueError, match=rf"results\.jsonl:3: .*{message}") as info:
        read_results(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("write", "error", "message"),
    [
        (None, RunDirError, "benchmark results not found"),
        ("\n", DataError, "no benchmark records"),
    ],
    ids=["missing", "empty"],
)
def test_unusable_results_file(tmp_path: Path, write: str | None, error: type, message: str) -> None:
    path = tmp_path / "results.jsonl"
    if write is not None:
        path.write_text(write)
    with pytest.raises(error, match=message):
        read_results(path)


def test_duplicate_manifest_entry_raises(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"models": MANIFEST["models"] + MANIFEST["models"][:1]}))
    with pytest.raises(DataError, match=r"manifest\.json: models\[5\] duplicates"):
        read_manifest(path)


def test_import_does_not_load_matplotlib() -> None:
    code = "import sys, toolkit.report; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
