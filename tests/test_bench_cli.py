"""`edgekd bench` in-process: bundles, run dirs, bare files and folders, suites, exit codes and the table."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from benchmarks.records import read_records
from export._files import sha256_file
from tests.conftest import onnx_classifier, write_manifest_for
from toolkit.cli.main import app
from toolkit.errors import EdgekdError

runner = CliRunner()
FAST = ["--min-runs", "5", "--min-time", "0", "--repeats", "1"]


def _mlp_onnx(path: Path, hidden: int) -> Path:
    """Flatten -> MatMul(16 x hidden) -> MatMul(hidden x 3): a bigger 'teacher' for the same input."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((16, hidden), dtype=np.float32)
    w2 = rng.standard_normal((hidden, 3), dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "w1"], ["hidden"]),
            helper.make_node("MatMul", ["hidden", "w2"], ["output"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 4, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3])],
        initializer=[numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A two-file bundle (teacher MLP, student linear) with a manifest and ten labelled test images."""
    root = tmp_path_factory.mktemp("bundle")
    _mlp_onnx(root / "teacher.onnx", hidden=2048)
    onnx_classifier(root / "student_kd.onnx", np.eye(16, 3, dtype=np.float32), side=4)
    (root / "data").mkdir()
    x = np.zeros((10, 1, 4, 4), np.uint8)
    x[np.arange(10), 0, 0, np.arange(10) % 3] = 200
    np.savez(root / "data" / "test.npz", x=x, y=(np.arange(10) % 3).astype(np.int64))
    models = [
        {"name": name, "role": role, "file": f"{name}.onnx", "format": "onnx", "precision": "fp32"}
        for name, role in (("teacher", "teacher"), ("student_kd", "student"))
    ]
    spec = {"name": "input", "shape": [None, 1, 4, 4], "dtype": "float32", "layout": "NCHW"}
    spec["preprocessing"] = {"scale": 1 / 255, "mean": [0.0], "std": [1.0]}
    test_data = {"file": "data/test.npz", "n": 10, "sha256": sha256_file(root / "data" / "test.npz")}
    write_manifest_for(root, models, input=spec, test_data=test_data)
    return root


def test_bundle_run_prints_the_table_with_baseline_and_ratios(bundle, tmp_path):
    results = tmp_path / "r.jsonl"
    r = runner.invoke(app, ["bench", str(bundle), "--results", str(results), *FAST, "--repeats", "2"])
    assert r.exit_code == 0, r.output
    recs = read_records(results)
    assert sorted((x.model, x.round) for x in recs) == [
        (m, k) for m in ("student_kd", "teacher") for k in (0, 1)
    ]
    assert {x.suite for x in recs} == {"default"} and all(x.accuracy is not None for x in recs)
    # Pooled p50: the median of the rounds' p50s.
    p50 = {m: np.median([x.latency.p50 for x in recs if x.model == m]) for m in ("teacher", "student_kd")}
    speedup = p50["teacher"] / p50["student_kd"]
    size = recs[0].file_size_bytes / next(x.file_size_bytes for x in recs if x.model == "student_kd")
    if recs[0].model != "teacher":
        size = 1 / size
    table = r.output[r.output.index("Benchmark (rounds pooled") :]
    line = next(row for row in table.splitlines() if "│ student_kd" in row)
    assert f"{speedup:.2f}×" in line and f"{size:.1f}×" in line
    assert "baseline" in next(row for row in table.splitlines() if "│ teacher" in row)
    assert f"target: {recs[0].target['label']}" in r.output
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["model"] for row in rows] == [x.model for x in recs]
    assert f"4 records appended to {results} (table: {tmp_path / 'r.csv'})" in r.output


def test_run_dir_uses_its_config_and_writes_beside_it(bundle, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(bundle, run / "bundle")
    (run / "config.yaml").write_text(
        "bench: {threads: [1], warmup: 1, min_runs: 5, min_time_s: 0.0, repeats: 1}\n"
    )
    r = runner.invoke(app, ["bench", str(run)])
    assert r.exit_code == 0, r.output
    recs = read_records(run / "bench" / "results.jsonl")
    assert len(recs) == 2 and {x.suite for x in recs} == {"run-config"}
    assert all(x.protocol["min_runs"] == 5 and x.warmup == 1 for x in recs)
    assert (run / "bench" / "results.csv").is_file()


def test_bare_file_says_which_dims_it_chose(tmp_path):
    model = onnx_classifier(tmp_path / "any.onnx", np.eye(16, 3, dtype=np.float32), side=4)
    results = tmp_path / "r.jsonl"
    r = runner.invoke(app, ["bench", str(model), "--results", str(results), *FAST])
    assert r.exit_code == 0, r.output
    note = "input 'input' dim 0 is dynamic: set to the batch size 1 (--shape sets it)"
    assert f"note {note}: any.onnx" in r.output
    (rec,) = read_records(results)
    assert rec.notes == [note] and rec.input_shape == [1, 1, 4, 4] and rec.role == "unknown"
    r = runner.invoke(app, ["bench", str(model), "--results", str(results), "--shape", "3,1,4,4", *FAST])
    assert r.exit_code == 0, r.output
    shaped = read_records(results)[-1]
    assert (shaped.batch_size, shaped.input_shape, shaped.notes) == (3, [3, 1, 4, 4], [])


def test_folder_with_a_broken_file_keeps_the_good_record_and_exits_1(tmp_path):
    onnx_classifier(tmp_path / "good.onnx", np.eye(16, 3, dtype=np.float32), side=4)
    (tmp_path / "broken.onnx").write_bytes(b"not an onnx file")
    results = tmp_path / "out" / "r.jsonl"
    r = runner.invoke(app, ["bench", str(tmp_path), "--results", str(results), *FAST])
    assert r.exit_code == 1 and isinstance(r.exception, EdgekdError)
    assert str(r.exception) == f"{tmp_path}: 1 of 2 files failed to benchmark"
    assert f"FAILED {tmp_path / 'broken.onnx'}: benchmark worker exited with 1" in r.output
    assert [x.model for x in read_records(results)] == ["good"]


def test_constrained_suite_is_labelled_in_output_and_records(tmp_path):
    model = onnx_classifier(tmp_path / "m.onnx", np.eye(16, 3, dtype=np.float32), side=4)
    results = tmp_path / "r.jsonl"
    args = ["bench", str(model), "--suite", "mobile-class", "--threads", "1", "--repeats", "1"]
    r = runner.invoke(app, [*args, "--cooldown", "0", "--results", str(results), *FAST])
    assert r.exit_code == 0, r.output
    (rec,) = read_records(results)
    cores = len(rec.target["cpus"])
    label = f"constrained local CPU ({cores} core{'s' if cores > 1 else ''}, 1 thread), not a phone"
    assert rec.target["label"] == label and rec.cpu_affinity == rec.target["cpus"]
    assert f"target: {label}" in r.output


SHIPPED = "cpu, jetson, mobile-class, raspberry-pi"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--shape", "1,x"], "--shape: expected comma-separated integers >= 1 like 1,1,28,28, got '1,x'"),
        (["--suite", "pi9"], f"pi9: unknown suite; shipped suites: {SHIPPED}, or a .yaml file"),
        (["--results", "out.csv"], "out.csv: --results is the JSONL file; results.csv is written beside it"),
    ],
)  # fmt: skip
def test_bad_options_raise_one_line_errors(tmp_path, args, message):
    model = onnx_classifier(tmp_path / "m.onnx", np.eye(16, 3, dtype=np.float32), side=4)
    r = runner.invoke(app, ["bench", str(model), *args])
    assert r.exit_code == 1 and isinstance(r.exception, ValueError)
    assert str(r.exception) == message


def test_bad_suite_file_is_one_line_on_stderr(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text("threads: [0]\n")
    r = subprocess.run(
        [sys.executable, "-m", "toolkit.cli.main", "bench", str(tmp_path), "--suite", str(suite)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert r.stderr.strip() == f"error: {suite}: threads: expected a non-empty list of integers >= 1, got [0]"


def test_one_file_of_a_bundle_keeps_its_manifest_entry(bundle):
    from benchmarks.plan import find_models

    models = find_models(bundle / "student_kd.onnx")
    assert [(f.model, f.role, f.precision) for f in models.files] == [("student_kd", "student", "fp32")]
    assert models.data_path == str(bundle / "data" / "test.npz") and models.input_shape == [None, 1, 4, 4]
