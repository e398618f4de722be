"""The benchmark protocol: suites, shuffled repeats, concurrent streams, batch skips, targets, CSV."""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest

from benchmarks.bundle import run_suite
from benchmarks.harness import BenchConfig, run_benchmark
from benchmarks.measure import feed_shape, time_streams
from benchmarks.plan import find_models, shuffled_order
from benchmarks.records import HIGH_CV, BenchRecord, LatencyStats, read_records, write_csv
from benchmarks.suite import Suite, detect_device, list_suites, load_suite, resolve_target
from tests.conftest import onnx_classifier

FAST = {"warmup": 2, "min_runs": 20, "min_time_s": 0.05}
WEIGHT = np.eye(16, 3, dtype=np.float32)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    return onnx_classifier(tmp_path_factory.mktemp("onnx") / "tiny.onnx", WEIGHT, side=4)


def _pool_onnx(path: Path) -> Path:
    """Global average pool over a fully dynamic [N, 1, H, W] input: every dim is free."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["output"])],
        "pool",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 1, 1, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """One shuffled, repeated run over a folder holding a tiny ONNX and a batch-1 TFLite file."""
    litert_torch = pytest.importorskip("litert_torch")
    import torch

    folder = tmp_path_factory.mktemp("models")
    onnx_classifier(folder / "tiny.onnx", WEIGHT, side=4)
    (folder / "readme.txt").write_text("not a model")
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LITERT_TORCH_SHOW_PROGRESS", "n")
        litert_torch.convert(module, (torch.zeros(1, 1, 4, 4),)).export(str(folder / "tiny.tflite"))
    suite = Suite(name="t", batch_sizes=[1, 2], repeats=2, seed=3, cooldown_s=0.25, **FAST)
    sleeps: list[float] = []
    results = folder / "out" / "results.jsonl"
    done = run_suite(folder, results, suite, sleep=sleeps.append)
    return folder, results, done, sleeps


# --- suites -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cpu", "raspberry-pi", "jetson", "mobile-class"])
def test_shipped_suites_validate(name):
    assert name in list_suites()
    suite = load_suite(name)
    assert suite.name == name and suite.repeats >= 1 and suite.path.endswith(f"{name}.yaml")
    assert all(isinstance(t, int) for t in suite.threads + suite.batch_sizes + suite.streams)


def test_suites_say_what_they_stand_for():
    jetson = load_suite("jetson")
    assert jetson.backend_options["onnxruntime"] == {
        "providers": ["tensorrt", "cuda", "cpu"],
        "trt_fp16": True,
    }
    assert jetson.target == {"kind": "native", "device": "jetson"}
    assert load_suite("raspberry-pi").target["device"] == "raspberry-pi"
    mobile = load_suite("mobile-class")
    assert mobile.target["kind"] == "constrained" and mobile.target["cpus"] >= 1


_KEYS = ", ".join(f.name for f in fields(Suite) if f.name != "path")
BAD_SUITES = [
    ("threads: [0]", "threads: expected a non-empty list of integers >= 1, got [0]"),
    ("streams: []", "streams: expected a non-empty list of integers >= 1, got []"),
    ("bogus: 1", f"bogus: unknown key; expected one of {_KEYS}"),
    ("min_time_s: fast", "min_time_s: expected a number >= 0, got 'fast'"),
    ("repeats: true", "repeats: expected an integer >= 1, got True"),
    ("accuracy: 1", "accuracy: expected true or false, got 1"),
    ("min_runs: 10\nmax_runs: 5", "max_runs: 5 is below min_runs 10"),
    (
        "backends: {gguf: onnxruntime}",
        "backends.gguf: unknown format; expected one of onnx, pte, tflite, torch",
    ),
    (
        "backends: {onnx: [tensorrt]}",
        "backends.onnx: expected backend names from executorch, executorch-numpy, litert, onnxruntime, "
        "tflite_runtime, torch, got ['tensorrt']",
    ),
    (
        "backend_options: {onnxruntime: [a]}",
        "backend_options.onnxruntime: expected a mapping of option names to values, got ['a']",
    ),
    ("target: {kind: emulated}", "target.kind: expected one of native, constrained, got 'emulated'"),
    ("target: {kind: constrained}", "target.cpus: a constrained target needs the number of cores to pin to"),
    ("target: {device: pi5}", "target.device: expected one of raspberry-pi, jetson, got 'pi5'"),
    ("target: {cpus: 2}", "target.cpus: only a constrained target pins or caps"),
    ("target: {kind: native, gpu: 1}", "target.gpu: unknown key; expected kind, device, cpus, max_threads"),
    ("[1, 2]", "expected a mapping of suite settings, got list"),
]


@pytest.mark.parametrize("text, message", BAD_SUITES)
def test_bad_suite_is_one_line_naming_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ValueError) as info:
        load_suite(path)
    assert str(info.value) == f"{path}: {message}"


def test_bad_suite_names_and_yaml(tmp_path):
    with pytest.raises(ValueError) as info:
        load_suite("pi9")
    assert (
        str(info.value) == f"pi9: unknown suite; shipped suites: {', '.join(list_suites())}, or a .yaml file"
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text("threads: [1\n")
    with pytest.raises(ValueError, match=rf"^{broken}: invalid YAML \(") as info:
        load_suite(broken)
    assert "\n" not in str(info.value)


# --- order, statistics, records ---------------------------------------------------------------------


def test_shuffled_order_is_a_permutation_per_round_and_depends_on_seed():
    order = shuffled_order(12, repeats=3, seed=0)
    assert [r for r, _, _ in order] == [0] * 12 + [1] * 12 + [2] * 12
    for r in range(3):
        rnd = [(pos, i) for rr, pos, i in order if rr == r]
        assert [pos for pos, _ in rnd] == list(range(12)) and sorted(i for _, i in rnd) == list(range(12))
    rounds = [[i for rr, _, i in order if rr == r] for r in range(3)]
    assert rounds[0] != rounds[1] and rounds[0] != list(range(12))  # reshuffled every round
    assert order == shuffled_order(12, repeats=3, seed=0)
    assert order != shuffled_order(12, repeats=3, seed=1)


def test_high_cv_is_flagged():
    assert HIGH_CV == 0.10
    assert LatencyStats.from_values([1.0, 1.0, 1.0]).cv_high is False
    noisy = LatencyStats.from_values([1.0, 2.0])
    assert noisy.cv > HIGH_CV and noisy.cv_high is True
    old = {k: v for k, v in vars(noisy).items() if k != "cv_high"}  # written before the flag existed
    assert LatencyStats(**old).cv_high is True


def test_older_records_load_and_unknown_keys_still_raise(tiny_onnx):
    record = run_benchmark(BenchConfig(tiny_onnx, **FAST))
    data = record.to_dict()
    new = ("streams", "round", "order", "suite", "images", "wall_s", "notes", "backend_info", "cpu_affinity")
    old = {k: v for k, v in data.items() if k not in new}
    loaded = BenchRecord.from_dict(old)
    assert (loaded.streams, loaded.round, loaded.notes, loaded.backend_info) == (1, 0, [], None)
    with pytest.raises(ValueError, match=r"unknown keys \['bogus'\]"):
        BenchRecord.from_dict({**data, "bogus": 1})
    with pytest.raises(ValueError, match=r"missing keys \['latency'\]"):
        BenchRecord.from_dict({k: v for k, v in data.items() if k != "latency"})


# --- concurrent streams -----------------------------------------------------------------------------


def test_time_streams_run_together_on_a_known_workload():
    samples, wall_s = time_streams(
        [lambda: time.sleep(0.002)] * 2, warmup=1, min_runs=10, min_time_s=0.1, max_runs=10_000
    )
    assert len(samples) == 2 and all(len(s) >= 10 and sum(s) >= 100.0 for s in samples)
    busy_s = sum(sum(s) for s in samples) / 1e3
    # Released together on the barrier, the two sleeping streams overlap: wall time is about half the
    # summed per-call time (serial would be equal).
    assert 0.1 <= wall_s < 0.75 * busy_s


def test_two_streams_pool_samples_and_count_images_over_wall_time(tiny_onnx):
    record = run_benchmark(BenchConfig(tiny_onnx, streams=2, batch_size=3, **FAST))
    assert record.streams == 2 and len(record.runs_per_stream) == 2
    assert all(n >= FAST["min_runs"] for n in record.runs_per_stream)
    assert record.latency.count == sum(record.runs_per_stream) == len(record.latency.samples_ms)
    assert record.images == 3 * record.latency.count
    assert record.wall_s >= FAST["min_time_s"]
    assert record.throughput_ips == pytest.approx(record.images / record.wall_s)
    assert record.input_shape == [3, 1, 4, 4]
    assert "CPUExecutionProvider" in record.backend_info["providers"]


# --- input shapes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model_shape, given, batch, expected, notes",
    [
        ([None, 1, 28, 28], [None, 1, 28, 28], 4, [4, 1, 28, 28], []),  # a bundle: dim 0 is the batch
        (
            [None, 1, 4],
            None,
            1,
            [1, 1, 4],
            ["input 'x' dim 0 is dynamic: set to the batch size 1 (--shape sets it)"],
        ),
        (
            [1, 3, None, None],
            None,
            1,
            [1, 3, 1, 1],
            [f"input 'x' dim {i} is dynamic: defaulted to 1 (--shape sets it)" for i in (2, 3)],
        ),
        (
            [None, 3, None],
            [2, 3, 7],
            2,
            [2, 3, 7],
            ["input 'x' dim 2 is dynamic: set to 7 from the given shape"],
        ),
    ],
)
def test_feed_shape(model_shape, given, batch, expected, notes):
    config = BenchConfig("m.onnx", batch_size=batch, input_shape=given)
    assert feed_shape(config, "x", model_shape) == (expected, notes, None)


def test_feed_shape_skips_fixed_batch_and_rejects_conflicts():
    dims, _, skip = feed_shape(BenchConfig("m.tflite", batch_size=8), "x", [1, 1, 28, 28])
    assert dims is None and skip == "the file takes batch 1 only (input 'x' is fixed at [1, 1, 28, 28])"
    with pytest.raises(ValueError, match=r"^m\.onnx: input shape \[1, 28, 28\] has 3 dims, input 'x' has 4"):
        feed_shape(BenchConfig("m.onnx", input_shape=[1, 28, 28]), "x", [None, 1, 28, 28])
    with pytest.raises(
        ValueError, match=r"^m\.onnx: input shape \[1, 3, 28, 28\] sets dim 1 to 3, the model fixes 1"
    ):
        feed_shape(BenchConfig("m.onnx", input_shape=[1, 3, 28, 28]), "x", [None, 1, 28, 28])


def test_bare_file_with_dynamic_dims_is_noted(tmp_path):
    path = _pool_onnx(tmp_path / "pool.onnx")
    default = run_suite(path, tmp_path / "r.jsonl", Suite(**FAST)).records[0]
    assert default.input_shape == [1, 1, 1, 1] and (default.role, default.precision) == ("unknown", "unknown")
    assert default.notes == [
        "input 'input' dim 0 is dynamic: set to the batch size 1 (--shape sets it)",
        "input 'input' dim 2 is dynamic: defaulted to 1 (--shape sets it)",
        "input 'input' dim 3 is dynamic: defaulted to 1 (--shape sets it)",
    ]
    shaped = run_suite(path, tmp_path / "r.jsonl", Suite(**FAST), shape=[1, 1, 5, 6]).records[0]
    assert shaped.input_shape == [1, 1, 5, 6] and shaped.accuracy is None
    assert shaped.notes == [
        "input 'input' dim 2 is dynamic: set to 5 from the given shape",
        "input 'input' dim 3 is dynamic: set to 6 from the given shape",
    ]


def test_find_models_in_a_folder_and_bad_paths(tmp_path):
    onnx_classifier(tmp_path / "b.onnx", WEIGHT, side=4)
    onnx_classifier(tmp_path / "a.onnx", WEIGHT, side=4)
    (tmp_path / "notes.txt").write_text("x")
    models = find_models(tmp_path)
    assert [(f.model, f.format, f.role) for f in models.files] == [
        ("a", "onnx", "unknown"),
        ("b", "onnx", "unknown"),
    ]
    assert models.data_path is None and models.input_shape is None
    with pytest.raises(ValueError) as info:
        find_models(tmp_path / "notes.txt")
    assert (
        str(info.value)
        == f"{tmp_path / 'notes.txt'}: cannot benchmark a .txt file; expected .onnx, .pte, .tflite or .pt2"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=rf"^{empty / 'manifest.json'}: not found, and {empty} holds no"):
        find_models(empty)


# --- a whole run: order, repeats, cooldown, batch skip, CSV ------------------------------------------


def test_run_is_shuffled_repeated_and_recorded(folder_run):
    _, results, done, sleeps = folder_run
    recs = read_records(results)
    assert recs == done.records and not done.errors
    # onnx at batch 1 and 2, tflite at batch 1, in each of two rounds
    keys = sorted((r.round, r.format, r.batch_size) for r in recs)
    assert keys == [(r, f, b) for r in (0, 1) for f, b in (("onnx", 1), ("onnx", 2), ("tflite", 1))]
    assert {r.suite for r in recs} == {"t"} and all(r.protocol["seed"] == 3 for r in recs)
    assert all(r.protocol["repeats"] == 2 and r.protocol["cooldown_s"] == 0.25 for r in recs)
    expected = {(r, pos, i) for r, pos, i in shuffled_order(4, repeats=2, seed=3)}
    assert {(r.round, r.order) for r in recs} <= {(r, pos) for r, pos, _ in expected}
    # A cooldown before every worker started after the first: 4 configurations in round 0, the
    # skipped one not started again in round 1.
    assert sleeps == [0.25] * 6
    # Bare files: no test data, and the ONNX file's free batch dim is said to be set, not silently.
    assert all(r.accuracy is None for r in recs)
    note = "input 'input' dim 0 is dynamic: set to the batch size {} (--shape sets it)"
    assert all(r.notes == ([note.format(r.batch_size)] if r.format == "onnx" else []) for r in recs)


def test_fixed_batch_tflite_is_skipped_not_failed(folder_run):
    folder, _, done, _ = folder_run
    assert done.skipped == [
        f"{folder / 'tiny.tflite'} (batch 2): the file takes batch 1 only "
        "(input 'serving_default_args_0' is fixed at [1, 1, 4, 4])"
    ]
    assert not done.failed_files and done.n_files == 2


def test_csv_is_flat_and_matches_the_jsonl(folder_run, tmp_path):
    _, results, done, _ = folder_run
    path = write_csv(results, tmp_path / "results.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(done.records)
    columns = "model format streams round order suite latency_p50 latency_cv_high target_kind target_label"
    columns += " throughput_ips wall_s protocol_seed machine_cpu_model backend_info_providers notes"
    assert set(columns.split()) <= set(rows[0])
    assert not any("samples" in col for col in rows[0])
    for row, rec in zip(rows, done.records, strict=True):
        assert float(row["latency_p50"]) == rec.latency.p50 and int(row["round"]) == rec.round
        assert json.loads(row["notes"]) == rec.notes


# --- targets ------------------------------------------------------------------------------------------


def _root(tmp_path: Path, model: str | None = None, tegra: bool = False) -> Path:
    tmp_path.mkdir(parents=True)
    if model is not None:
        (tmp_path / "proc/device-tree").mkdir(parents=True)
        (tmp_path / "proc/device-tree/model").write_text(model + "\x00")
    if tegra:
        (tmp_path / "etc").mkdir()
        (tmp_path / "etc/nv_tegra_release").write_text("# R35 (release)\n")
    return tmp_path


def test_device_detection_and_labels(tmp_path):
    pi = _root(tmp_path / "pi", "Raspberry Pi 4 Model B Rev 1.4")
    jetson = _root(tmp_path / "jetson", tegra=True)
    assert detect_device(pi) == ("raspberry-pi", "Raspberry Pi 4 Model B Rev 1.4")
    assert detect_device(jetson) == ("jetson", "NVIDIA Jetson")
    assert detect_device(_root(tmp_path / "pc")) is None
    pi_suite = load_suite("raspberry-pi")
    on_pi = resolve_target(pi_suite, 4, root=pi)
    assert on_pi == {
        "name": "raspberry-pi",
        "kind": "native",
        "label": "native: Raspberry Pi 4 Model B Rev 1.4",
        "device": "Raspberry Pi 4 Model B Rev 1.4",
    }
    on_jetson = resolve_target(pi_suite, 4, root=jetson)
    assert on_jetson["name"] == "local-cpu (raspberry-pi settings)"
    assert on_jetson["label"].endswith("with raspberry-pi suite settings — not a Raspberry Pi")


@pytest.mark.skipif(detect_device() is not None, reason="this machine is a board")
@pytest.mark.parametrize(
    "suite, device", [("raspberry-pi", "a Raspberry Pi"), ("jetson", "an NVIDIA Jetson")]
)
def test_device_suite_here_says_it_is_not_the_device(suite, device):
    target = resolve_target(load_suite(suite), 1)
    assert target["kind"] == "native" and "device" not in target
    assert target["label"].startswith("native: this CPU (")
    assert target["label"].endswith(f"with {suite} suite settings — not {device}")


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs os.sched_setaffinity")
def test_constrained_suite_pins_the_worker_and_caps_threads(tiny_onnx, tmp_path):
    first = sorted(os.sched_getaffinity(0))[0]
    suite = replace(
        load_suite("mobile-class"),
        threads=[1, 4],
        target={"kind": "constrained", "cpus": 1},
        repeats=1,
        **FAST,
    )
    done = run_suite(tiny_onnx, tmp_path / "r.jsonl", suite)
    assert [r.threads for r in done.records] == [1]  # 4 threads capped to the single core, then deduplicated
    (record,) = done.records
    assert record.target == {
        "name": "mobile-class",
        "kind": "constrained",
        "label": "constrained local CPU (1 core, 1 thread), not a phone",
        "cpus": [first],
    }
    assert record.cpu_affinity == [first]  # read inside the worker, after pinning


def test_one_protocol_default_for_run_bench_suites_and_harness():
    from benchmarks.harness import BenchConfig
    from benchmarks.protocol import DEFAULT_PROTOCOL
    from benchmarks.suite import Suite
    from toolkit.config import DEFAULT_CONFIG, BenchSettings, load_config

    def protocol(obj) -> tuple:
        return (obj.warmup, obj.min_runs, obj.min_time_s)

    want = protocol(DEFAULT_PROTOCOL)
    assert protocol(Suite()) == protocol(BenchConfig("m.onnx")) == protocol(BenchSettings()) == want
    assert protocol(load_config(DEFAULT_CONFIG).bench) == want  # the default run sets none of its own
    assert Suite().max_runs == BenchConfig("m.onnx").max_runs == DEFAULT_PROTOCOL.max_runs
