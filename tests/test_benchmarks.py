"""Tests for benchmarks/: records, backends, the timing loop and end-to-end runs in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks import BenchConfig, BenchRecord, LatencyStats, append_record, read_records, run_benchmark
from benchmarks.backends import available, backend_for, backend_names, load_backend
from benchmarks.harness import BenchmarkError, time_runs
from tests.conftest import onnx_classifier

# Column k of the classifier reads pixel k, so the brightest of the first three pixels is the class.
N_CLASSES = 3
WEIGHT = np.zeros((16, N_CLASSES), np.float32)
WEIGHT[np.arange(N_CLASSES), np.arange(N_CLASSES)] = 1.0
FAST = {"warmup": 2, "min_runs": 20, "min_time_s": 0.2}


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    return onnx_classifier(tmp_path_factory.mktemp("onnx") / "tiny.onnx", WEIGHT, side=4)


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory) -> Path:
    litert_torch = pytest.importorskip("litert_torch")
    import torch

    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, N_CLASSES, bias=False)).eval()
    with torch.no_grad():
        module[1].weight.copy_(torch.from_numpy(WEIGHT.T))
    path = tmp_path_factory.mktemp("tflite") / "tiny.tflite"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LITERT_TORCH_SHOW_PROGRESS", "n")
        litert_torch.convert(module, (torch.zeros(1, 1, 4, 4),)).export(str(path))
    return path


@pytest.fixture(scope="module")
def tiny_int8_tflite(tmp_path_factory) -> Path:
    """Full-integer tiny classifier (int8 input and output) made by edgekd's own exporter."""
    pytest.importorskip("litert_torch")
    import torch

    from export.tflite import export_tflite_int8

    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, N_CLASSES, bias=False)).eval()
    with torch.no_grad():
        module[1].weight.copy_(torch.from_numpy(WEIGHT.T))
    path = tmp_path_factory.mktemp("int8") / "tiny_int8.tflite"
    calibration = [torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(i)) for i in range(8)]
    export_tflite_int8(module, torch.zeros(1, 1, 4, 4), path, calibration)
    return path


@pytest.fixture(scope="module")
def labelled_npz(tmp_path_factory) -> Path:
    """Ten examples; the model predicts 0,1,2,0,1,2,... and seven labels agree, so accuracy is 0.7."""
    x = np.zeros((10, 1, 4, 4), np.uint8)
    predicted = np.arange(10) % N_CLASSES
    x[np.arange(10), 0, 0, predicted] = 200
    y = predicted.astype(np.int64)
    y[[1, 4, 8]] = (y[[1, 4, 8]] + 1) % N_CLASSES
    path = tmp_path_factory.mktemp("data") / "val.npz"
    np.savez(path, x=x, y=y)
    return path


def _record(**overrides) -> BenchRecord:
    values = dict(
        model="tiny",
        role="student",
        file="tiny.onnx",
        format="onnx",
        precision="fp32",
        backend="onnxruntime",
        target={"name": "local-cpu", "kind": "native", "label": "native: this CPU"},
        threads=1,
        batch_size=1,
        load_ms=1.5,
        first_run_ms=0.7,
        latency=LatencyStats.from_values([1.0, 2.0]),
        throughput_ips=600.0,
        peak_rss_mb=80.0,
        baseline_rss_mb=60.0,
        rss_increase_mb=20.0,
        file_size_bytes=123,
        accuracy=0.7,
        n_accuracy=10,
        machine={"cpu_model": "x"},
        runtime_version="1.0",
        timestamp="2025-01-01T00:00:00+00:00",
        edgekd_version=None,
        warmup=2,
        protocol={"min_runs": 20, "min_time_s": 0.2, "warmup": 2},
    )
    values.update(overrides)
    return BenchRecord(**values)


def test_latency_stats_known_values():
    values = [float(v) for v in range(1, 101)]
    stats = LatencyStats.from_values(values)
    assert (stats.count, stats.mean, stats.p50, stats.min, stats.max) == (100, 50.5, 50.5, 1.0, 100.0)
    assert stats.p90 == np.percentile(values, 90) and stats.p99 == np.percentile(values, 99)
    assert stats.stdev == pytest.approx(np.std(values, ddof=1), rel=1e-12)
    assert stats.cv == pytest.approx(stats.stdev / 50.5, rel=1e-12)
    assert stats.samples_ms == values


def test_latency_stats_rejects_empty():
    with pytest.raises(ValueError, match="at least one sample"):
        LatencyStats.from_values([])


def test_record_json_round_trip(tmp_path):
    record = _record()
    assert BenchRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    path = tmp_path / "sub" / "records.jsonl"
    append_record(path, record)
    append_record(path, _record(model="other", accuracy=None, n_accuracy=None))
    assert read_records(path) == [record, _record(model="other", accuracy=None, n_accuracy=None)]


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("{not json", "Expecting property name"),
        ('{"model": "tiny"}', "missing keys"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_read_records_names_file_and_line(tmp_path, bad_line, message):
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(_record().to_dict()) + "\n\n" + bad_line + "\n")
    with pytest.raises(ValueError, match=rf"records\.jsonl:3: invalid record \(.*{message}"):
        read_records(path)


def test_backend_selection():
    assert backend_for("m.onnx") == "onnxruntime"
    assert backend_for("m.tflite") in ("litert", "tflite_runtime")
    known = "executorch, executorch-numpy, litert, onnxruntime, tflite_runtime, torch"
    with pytest.raises(ValueError, match=f"unknown backend .tensorrt.; known: {known}"):
        load_backend("tensorrt")
    with pytest.raises(ValueError, match=r"m\.pt: cannot pick a backend"):
        backend_for("m.pt")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"backend": "tvm"}, "unknown backend 'tvm'"),
        ({"threads": 0}, r"threads: expected >= 1, got 0"),
        ({"min_runs": 10, "max_runs": 5}, "max_runs 5 < min_runs 10"),
        ({"min_time_s": -1.0}, "must be >= 0"),
    ],
)
def test_bench_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BenchConfig("m.onnx", **kwargs)


def test_litert_quantizes_and_clips():
    from benchmarks.backends.litert import _quantize

    q = _quantize(np.array([0.5, -100.0, 100.0, 0.0], np.float32), np.int8, 0.1, -3)
    assert q.dtype == np.int8 and q.tolist() == [2, -128, 127, -3]


def test_litert_int8_model_takes_and_returns_floats(tiny_int8_tflite):
    from benchmarks.backends import litert

    handle = litert.load(tiny_int8_tflite, threads=1)
    assert handle.input_dtype == np.int8 and handle.output_dtype == np.int8
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 0, 1] = 0.8
    y = litert.run(handle, x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [[0.0, 0.8, 0.0]], atol=0.02)


def test_time_runs_on_known_duration():
    samples = time_runs(lambda: time.sleep(0.002), warmup=2, min_runs=20, min_time_s=0.1, max_runs=1000)
    stats = LatencyStats.from_values(samples)
    # A sleep is never shorter than asked; with both cores busy it may overshoot by milliseconds, but a
    # unit error (seconds or microseconds) would be off by 1000x.
    assert 2.0 <= stats.p50 <= 20.0
    assert stats.count >= 20 and sum(samples) >= 100.0
    assert len(time_runs(lambda: None, warmup=0, min_runs=5, min_time_s=10.0, max_runs=7)) == 7


@pytest.mark.parametrize("fixture", ["tiny_onnx", "tiny_tflite", "tiny_int8_tflite"])
def test_run_benchmark_end_to_end(fixture, request, labelled_npz, tmp_path):
    path = request.getfixturevalue(fixture)
    config = BenchConfig(
        path,
        role="student",
        precision="fp32",
        data_path=labelled_npz,
        batch_size=4 if path.suffix == ".onnx" else 1,
        **FAST,
    )
    record = run_benchmark(config)
    assert record.backend == backend_for(path)
    assert (record.model, record.format) == (path.stem, path.suffix[1:])
    assert record.latency.p50 > 0 and record.latency.count >= FAST["min_runs"]
    # Timed runs stop once both minimums are met, or at max_runs for a model of a few microseconds.
    assert sum(record.latency.samples_ms) >= FAST["min_time_s"] * 1e3 or record.latency.count == 100_000
    total_s = sum(record.latency.samples_ms) / 1e3
    assert record.throughput_ips == pytest.approx(config.batch_size * record.latency.count / total_s)
    assert record.peak_rss_mb >= record.baseline_rss_mb > 0
    assert record.accuracy == pytest.approx(0.7) and record.n_accuracy == 10
    assert record.file_size_bytes == path.stat().st_size and record.runtime_version
    append_record(tmp_path / "r.jsonl", record)
    assert read_records(tmp_path / "r.jsonl") == [record]


def test_bigger_model_uses_more_memory(tiny_onnx, tmp_path):
    weight = np.random.default_rng(0).standard_normal((4096, 4096), dtype=np.float32)  # 64 MiB
    big = onnx_classifier(tmp_path / "big.onnx", weight, side=64)
    del weight
    protocol = {"warmup": 1, "min_runs": 3, "min_time_s": 0.0}
    small_rec = run_benchmark(BenchConfig(tiny_onnx, **protocol))
    big_rec = run_benchmark(BenchConfig(big, **protocol))
    assert big_rec.peak_rss_mb > small_rec.peak_rss_mb + 50
    assert big_rec.rss_increase_mb > 50


def test_failing_child_names_the_file(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(BenchmarkError, match=r"broken\.onnx: benchmark worker exited with 1: .+"):
        run_benchmark(BenchConfig(broken, **FAST))


BLOCKED_IMPORTS = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "pandas", "matplotlib"}:
            raise ImportError(f"{name} is blocked")
sys.meta_path.insert(0, Block())
import benchmarks, benchmarks.backends.onnxruntime, benchmarks.harness
result = benchmarks.harness.measure(
    benchmarks.BenchConfig(sys.argv[1], warmup=1, min_runs=5, min_time_s=0.0))
assert result["latency"]["count"] >= 5
assert not {"torch", "pandas", "matplotlib", "yaml", "pydantic"} & set(sys.modules), sys.modules.keys()
print("ok")
"""


def test_import_and_measure_without_torch(tiny_onnx):
    root = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKED_IMPORTS, str(tiny_onnx)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity")
def test_target_cpus_pin_the_child(tiny_onnx):
    target = {"name": "core0", "kind": "constrained", "label": "1 core", "cpus": [0]}
    record = run_benchmark(BenchConfig(tiny_onnx, target=target, **FAST))
    assert record.target["cpus"] == [0] and record.latency.count >= FAST["min_runs"]


def test_available_matches_registry():
    assert all(isinstance(available(name), bool) for name in backend_names())


def test_agreement_of_a_file_with_a_file_its_outputs_and_labels(tmp_path):
    """One top-1 agreement for files, logits and labels: a file agrees with itself, a classifier with swapped
    class columns agrees only where the two classes tie, and labels count as the reference's classes."""
    pytest.importorskip("onnxruntime")
    from benchmarks.outputs import agreement, run_file, top1_agreement
    from tests.conftest import onnx_classifier

    weight = np.eye(16, 3, dtype=np.float32)
    a = onnx_classifier(tmp_path / "a.onnx", weight, 4)
    b = onnx_classifier(tmp_path / "b.onnx", weight[:, [1, 0, 2]], 4)
    x = np.zeros((6, 1, 4, 4), np.float32)
    x[:, 0, 0, :3] = [[3, 1, 0], [1, 3, 0], [0, 1, 3], [3, 0, 1], [0, 3, 1], [1, 0, 3]]
    assert agreement(a, a, x) == 1.0
    assert agreement(b, a, x) == 2 / 6  # only rows whose top class is 2
    out = run_file(a, x)
    assert agreement(b, out, x) == 2 / 6 and top1_agreement(out, np.array([0, 1, 2, 0, 1, 0])) == 5 / 6
    assert top1_agreement(out[:0], out[:0]) == 1.0
