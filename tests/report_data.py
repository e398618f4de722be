"""Hand-made benchmark records, manifest and training summary shared by the report tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import manifest_dict
from toolkit.report import ReportRow, build_rows, read_manifest, read_results

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
            "samples_ms": [p50] * 3,
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
MANIFEST = manifest_dict(
    None,
    [
        entry("teacher", "onnx", "fp32", 1_500_000, 0.91),
        entry("student_kd", "onnx", "fp32", 24_058, 0.90),
        entry("student_kd", "onnx", "int8", 24_058, 0.895),
        entry("student_kd", "tflite", "fp32", 24_058, 0.90),
        entry("student_scratch", "onnx", "fp32", 24_058, 0.88, passed=False),
    ],
    labels=[str(i) for i in range(10)],
)
SUMMARY = {
    "data": {"root": "/data", "train": 100, "val": 10, "test": 1000},
    "device": "cpu",
    "teacher": {"arch": "cnn_teacher", "test_accuracy": 0.912, "params": 1_500_000},
    "student_kd": {"arch": "cnn_student", "test_accuracy": 0.901, "params": 24_058, "temperature": 4.0},
    "student_scratch": {"arch": "cnn_student", "test_accuracy": 0.881, "params": 24_058},
}


ROUND_FACTORS = (0.98, 1.0, 1.02)  # three rounds whose median p50 is the record's own


def as_rounds(rec: dict, factors: tuple[float, ...] = ROUND_FACTORS) -> list[dict]:
    """`rec` measured in len(factors) rounds, its latency scaled by each factor (as `--repeats` writes it)."""
    out = []
    for i, f in enumerate(factors):
        lat = {
            k: v * f if k in ("mean", "p50", "p90", "p99", "min", "max") else v
            for k, v in rec["latency"].items()
        }
        lat["samples_ms"] = [s * f for s in rec["latency"]["samples_ms"]]
        out.append({**rec, "round": i, "latency": lat})
    return out


def write_run(
    run_dir: Path,
    records: list[dict] = RECORDS,
    *,
    summary: bool = True,
    factors: tuple[float, ...] = ROUND_FACTORS,
) -> Path:
    """Lay out bench/results.jsonl (each record as rounds), bundle/manifest.json and (optionally)
    distill/summary.json."""
    for sub in ("bench", "bundle", "distill"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) + "\n" for rec in records for r in as_rounds(rec, factors)]
    (run_dir / "bench/results.jsonl").write_text("".join(lines))
    (run_dir / "bundle/manifest.json").write_text(json.dumps(MANIFEST))
    if summary:
        (run_dir / "distill/summary.json").write_text(json.dumps(SUMMARY))
    return run_dir


def rows_of(
    tmp_path: Path, records: list[dict] = RECORDS, factors: tuple[float, ...] = ROUND_FACTORS
) -> list[ReportRow]:
    """Rows from `records` (each as rounds scaled by `factors`) and MANIFEST written under `tmp_path`."""
    run = write_run(tmp_path, records, factors=factors)
    return build_rows(read_results(run / "bench/results.jsonl"), read_manifest(run / "bundle/manifest.json"))


def find(rows: list[ReportRow], model: str, fmt: str, precision: str, target: str = "host") -> ReportRow:
    """The one row of `rows` with this model, format, precision and target name."""
    key = (model, fmt, precision, target)
    (row,) = [r for r in rows if (r.model, r.format, r.precision, r.target_name) == key]
    return row
