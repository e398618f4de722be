"""Measure ONNX/TFLite files on the CPU they run on; needs numpy and one runtime, never torch."""

from __future__ import annotations

from benchmarks.harness import BenchConfig, BenchmarkError, run_benchmark
from benchmarks.machine import machine_facts
from benchmarks.records import BenchRecord, LatencyStats, append_record, read_records

__all__ = [
    "run_benchmark",
    "BenchConfig",
    "BenchmarkError",
    "BenchRecord",
    "LatencyStats",
    "append_record",
    "read_records",
    "machine_facts",
]
