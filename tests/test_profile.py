"""Per-operator profiles: a tiny two-conv model's profile lists both convolutions, their dtype, and times
that add up to no more than the runtime's own run time."""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pytest

from tests.conftest import assert_kept_the_fastest_passing

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _two_convs(path):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(size=(8, 1, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(size=(4, 8, 3, 3)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["h"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w2"], ["logits"], name="conv2", pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "two_convs",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4, 28, 28])],
        initializer=[w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, str(path))
    return path


def test_a_two_conv_profile_lists_both_convs_with_dtype_and_times_that_add_up(tmp_path):
    from benchmarks.profile import profile_onnx

    path = _two_convs(tmp_path / "two.onnx")
    x = np.random.default_rng(1).normal(size=(1, 1, 28, 28)).astype(np.float32)
    profile = profile_onnx(path, x, runs=40, warmup=5)
    convs = [op for op in profile.ops if op.op_type == "Conv"]
    # the nodes of the graph onnxruntime ran (optimized: NCHWc convs with the ReLU fused), not the file's
    assert len(convs) == 2 and len({op.node for op in convs}) == 2
    assert all(op.calls == 40 and op.total_us > 0 for op in convs)
    assert all(op.input_dtypes[0] == "float" and op.provider == "CPUExecutionProvider" for op in convs)
    assert profile.runs == 40 and 0 < profile.ops_us <= profile.run_us
    assert set(profile.by_op_type()) >= {"Conv"} and list(profile.by_op_type())[0] == "Conv"


def test_int8_dot_product_flags_are_read_from_cpuinfo():
    from benchmarks.machine import int8_dot_product

    x86 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse avx2 avx512bw avx512_vnni avx_vnni\n"
    arm = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32 atomics asimddp i8mm\nCPU part\t: 0xd0b\n"
    old_arm = "processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"  # a Pi 4's Cortex-A72
    assert int8_dot_product(x86) == ["avx512_vnni", "avx_vnni"]
    assert int8_dot_product(arm) == ["asimddp", "i8mm"]
    assert int8_dot_product(old_arm) == []
    assert int8_dot_product(None) is None
    # an aarch64 process: HWCAP words from /proc/self/auxv win over a cpuinfo that is the host's (qemu-user)
    auxv = struct.pack("<QQQQQQ", 16, 1 << 20 | 1 << 1, 26, 1 << 13, 0, 0)
    assert int8_dot_product(x86, auxv) == ["asimddp", "i8mm"]
    assert int8_dot_product(x86, struct.pack("<QQQQ", 16, 1 << 1, 0, 0)) == []  # a Cortex-A72: neither


def _profile(precision: str, p50: float, ops: list[tuple[str, str, float]], runs: int = 10):
    from benchmarks.profile import OpTime, Profile

    times = [OpTime(f"n{i}", op, "CPUExecutionProvider", [dt], runs, us * runs) for i, (op, dt, us) in
             enumerate(ops)]  # fmt: skip
    return Profile(f"/b/student_{precision}.onnx", runs, sum(t.total_us for t in times) * 1.1, times,
                   "student", "onnx", precision, "onnxruntime", p50)  # fmt: skip


def test_the_int8_sentence_is_built_from_the_profile_numbers(tmp_path):
    from benchmarks.profile import ProfileFile, read_profiles, write_profiles
    from toolkit.report.time_breakdown import breakdown, explain, pairs, profile_markdown

    fp32 = _profile(
        "fp32", 20.0, [("Conv", "float", 12.0), ("Conv", "float", 6.0), ("MaxPool", "float", 2.0)]
    )
    int8 = _profile("int8", 30.0, [("QLinearConv", "uint8", 9.0), ("QLinearConv", "uint8", 5.0),
                                   ("QuantizeLinear", "float", 4.0), ("DequantizeLinear", "uint8", 4.0),
                                   ("ReduceMean", "float", 1.0)])  # fmt: skip
    data = ProfileFile({"cpu_model": "Test CPU", "int8_dot_product": ["avx512_vnni"]}, 1, 10, 2, [fp32, int8])
    (pair,) = pairs(data)
    # ARM's fp16 convolutions (NhwcFusedConv) are convolutions too, in fp16
    arm_fp16 = _profile("fp16", 9.0, [("NhwcFusedConv", "float16", 6.0), ("Cast", "float", 1.0)])
    assert breakdown(arm_fp16).compute_dtypes == {"fp16": 1} and breakdown(arm_fp16).us["conv/matmul"] == 6.0
    assert breakdown(int8).us == {"conv/matmul": 14.0, "quantize/dequantize": 8.0, "cast": 0.0, "layout": 0.0,
                                  "other": 1.0}  # fmt: skip
    assert explain(pair) == (
        "student int8 onnx (onnxruntime) is 1.50× slower than fp32 (p50 30.0 vs 20.0 µs): its conv/matmul "
        "time went 18.0 → 14.0 µs/run (1.29× faster) in 2 int8 nodes; 8.0 µs/run (35% of its op time) is "
        "quantize/dequantize (2 nodes); left in fp32: ReduceMean."
    )
    path = write_profiles(tmp_path / "profiles.json", data)
    assert read_profiles(path) == data
    text = profile_markdown(read_profiles(path))
    assert "Test CPU; int8 dot-product instructions: avx512_vnni." in text
    assert "| student_int8.onnx | onnxruntime | 30.0 | 25.3 | 23.0 | 0.77 | -1.40 |" in text


def test_a_file_that_is_not_a_profile_is_one_line(tmp_path):
    from benchmarks.profile import read_profiles

    bad = tmp_path / "profiles.json"
    bad.write_text('{"version": 7}')
    with pytest.raises(
        ValueError, match=r"profiles.json: not an edgekd profiles.json \(version 7, expected 1\)"
    ):
        read_profiles(bad)


def test_edgekd_profile_on_a_bundle_times_every_onnx_node_and_lists_tflite_ops(tiny_run, tmp_path):
    """The real thing on the tiny bundle: onnxruntime's per-node times add up near the unprofiled p50 (the
    profiler's own cost per node is the gap), LiteRT lists its ops with dtypes, and the report shows it."""
    import json
    import shutil
    import subprocess
    import sys

    from benchmarks.profile import read_profiles

    run = tmp_path / "run"  # a copy: the profile lands in RUN/profile, and the report reads it from there
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("report"))
    out = run / "profile"
    cmd = [sys.executable, "-m", "toolkit.cli.main", "profile", str(run / "bundle"), "--runs", "30"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = read_profiles(out / "profiles.json")
    by_file = {p.path.rsplit("/", 1)[-1]: p for p in data.profiles}
    manifest = json.loads((run / "bundle" / "manifest.json").read_text())
    assert set(by_file) == {m["file"] for m in manifest["models"]}
    for name, p in by_file.items():
        assert p.p50_us > 0, name
        if name.endswith(".onnx"):
            assert p.timed and p.runs == 30 and all(op.calls == 30 for op in p.ops), name
            assert 0 < p.ops_us <= p.run_us, name  # the kernels' times lie inside the runs' own times
            assert 0.5 < p.per_run(p.ops_us) / p.p50_us < 4, name  # the profiler's overhead, bounded
        elif name.endswith(".tflite"):
            assert not p.timed and p.ops and all(op.total_us is None for op in p.ops), name
        else:  # the .pt2 baselines: the torch backend has no op profiler, so their p50 alone
            assert name.endswith(".pt2") and not p.timed and not p.ops, name
    int8 = {op.dtype for op in by_file["student_kd_int8.onnx"].ops if op.op_type == "QLinearConv"}
    assert int8 == {"int8"}
    assert {op.dtype for op in by_file["student_kd_int8.tflite"].ops if op.op_type == "CONV_2D"} == {"int8"}
    assert {op.dtype for op in by_file["student_kd.tflite"].ops if op.op_type == "CONV_2D"} == {"fp32"}
    text = (out / "profile.md").read_text()
    assert "**student_kd · onnx · int8.** student_kd int8 onnx (onnxruntime) is " in text
    assert "**teacher · onnx · dynamic-int8.**" in text and "ConvInteger" in text
    proc = subprocess.run([sys.executable, "-m", "toolkit.cli.main", "report", str(run)], capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = (run / "report" / "report.md").read_text()
    assert "## Where the time goes" in report and "![per-op time by kind of work" in report
    assert (run / "report" / "profile.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _row(precision: str, p50: float, ci: tuple[float, float], model: str = "student", backend: str = "ort"):
    from toolkit.report.rows import ReportRow

    return ReportRow(
        model, "student", "onnx", precision, backend, 1, 1, 1, "local", "native", "native: this CPU",
        None, None, None, None, None, None, None, p50, p50, p50, None, None, p50_ci_ms=ci,
    )  # fmt: skip


def test_the_report_names_every_quantized_file_slower_than_its_fp32_twin():
    from benchmarks.manifest import LayoutSearch
    from toolkit.report.slower import slower_than_fp32_lines

    rows = [
        _row("fp32", 0.0228, (0.0222, 0.0229)),
        _row("int8", 0.0288, (0.0277, 0.0294)),  # clearly slower
        _row("fp16", 0.0230, (0.0225, 0.0240)),  # intervals overlap: not said
        _row("dynamic-int8", 0.0500, (0.0490, 0.0510), backend="litert"),  # no fp32 twin in its runtime
    ]
    assert slower_than_fp32_lines(rows) == [
        "**student onnx int8** (ort; native: this CPU, 1 thread(s), batch 1): 1.26× slower than its fp32 "
        "file (0.0288 [0.0277–0.0294] vs 0.0228 [0.0222–0.0229] ms).",
        "Smaller is not faster here for these files; `edgekd profile` says where their time goes.",
    ]
    assert slower_than_fp32_lines(rows[:1] + rows[2:]) == []
    tried = {"layout": "QDQ per-tensor U8S8", "p50_us": 40.0, "top1_agreement_val": 1.0, "passed": True}
    search = LayoutSearch.model_validate(
        dict(cpu="AMD EPYC", int8_dot_product=None, trigger="asked in config", default=None, margin=0.05,
             fp32_p50_us=30.0, kept="QDQ per-tensor U8S8", faster_than_fp32=False, timing="t",
             tried=[tried] * 8)
    )  # fmt: skip
    searched = dataclasses.replace(rows[1], layout_search=search)
    assert slower_than_fp32_lines([rows[0], searched])[0].endswith(
        "ms). Export tried 8 int8 layouts on AMD EPYC: none was faster than fp32 there; "
        "it kept QDQ per-tensor U8S8."
    )


def _tiny_rows(tiny_run):
    from benchmarks.plan import find_models
    from benchmarks.preprocess import model_input

    models = find_models(tiny_run / "bundle")
    with np.load(models.data_path) as data:
        return model_input(data["x"][:232], models.preprocessing)


def test_int8_layout_search_keeps_the_fastest_layout_within_parity(tiny_run, tmp_path):
    """Every layout written, checked and timed against the fp32 file; the kept one is the fastest that
    passed, its settings say which it is, and the manifest's typed settings accept the record."""
    from benchmarks.manifest import FileSettings, LayoutSearch
    from export.int8_layouts import LAYOUTS, onnx_layouts, search_int8_layout
    from toolkit.data import ArrayCalibrationReader

    x = _tiny_rows(tiny_run)
    reader = ArrayCalibrationReader(x[:32], batch_size=32)
    dst = tmp_path / "student_kd_int8.onnx"
    fp32 = tiny_run / "bundle" / "student_kd.onnx"
    writers = onnx_layouts(fp32, reader, method="minmax")
    settings = search_int8_layout(fp32, dst, writers, x[32:], backend="onnxruntime", rounds=1, runs=50)
    search = settings.layout_search
    assert len(search.tried) == len(LAYOUTS) == 8 and search.trigger == "asked in config"
    assert search.default is None
    assert_kept_the_fastest_passing(search)
    fmt, granularity, types = search.kept.split()
    assert settings.format == fmt and settings.per_channel == (granularity == "per-channel")
    assert settings.activations == {"U8S8": "uint8", "S8S8": "int8"}[types] and settings.weights == "int8"
    # every field given (the manifest records them all), and the record survives the manifest's JSON
    assert search.model_fields_set == set(LayoutSearch.model_fields)
    dumped = settings.model_dump(mode="json", exclude_unset=True)
    assert FileSettings.model_validate(dumped) == settings
    ops = {n.op_type for n in onnx.load(str(dst)).graph.node}
    assert ("QLinearConv" in ops) == (fmt == "QOperator") and ("QuantizeLinear" in ops)
    out = __import__("onnxruntime").InferenceSession(str(dst)).run(None, {"input": x[:1]})[0]
    assert out.shape == (1, 10)


def test_auto_searches_only_where_the_default_layout_runs_slower_than_its_reference(tiny_run, tmp_path):
    """auto: a default layout ~5x slower than the reference (dynamic int8 against fp32) starts the search and
    the manifest says why; a default faster than its reference (static int8 against dynamic) is kept as is."""
    from export import quantize
    from export.int8_layouts import int8_file, onnx_layouts
    from toolkit.data import ArrayCalibrationReader

    x = _tiny_rows(tiny_run)
    reader = ArrayCalibrationReader(x[:32], batch_size=32)
    fp32, dynamic = (
        tiny_run / "bundle" / "student_kd.onnx",
        tiny_run / "bundle" / "student_kd_dynamic_int8.onnx",
    )
    writers = dict(
        onnx_layouts(fp32, reader, method="minmax"), dynamic=lambda dst: quantize.quantize_dynamic(fp32, dst)
    )
    slow = int8_file("auto", fp32, tmp_path / "a.onnx", writers, "dynamic", x[32:], backend="onnxruntime")
    search = slow.layout_search
    assert search.trigger.startswith("auto: the default layout (dynamic) ran") and len(search.tried) == 9
    assert_kept_the_fastest_passing(search)
    assert search.kept != "dynamic" and slow.mode == "static"
    fast = int8_file(
        "auto", dynamic, tmp_path / "b.onnx", writers, "QDQ per-tensor U8S8", x[32:], backend="onnxruntime"
    )
    assert "layout_search" not in fast.model_fields_set and fast.format == "QDQ" and fast.per_channel is False
    never = int8_file(False, fp32, tmp_path / "c.onnx", writers, "dynamic", x[32:], backend="onnxruntime")
    assert "layout_search" not in never.model_fields_set and never.mode == "dynamic"


def test_tflite_layout_search_times_every_pt2e_layout_in_litert(tiny_run, tmp_path):
    """LiteRT: per-channel/per-tensor × int8/float io written by PT2E, checked and timed against the fp32
    .tflite; the kept file loads and its settings name the kept layout."""
    pytest.importorskip("litert_torch")
    import torch

    from export import tflite
    from export.int8_layouts import search_int8_layout, tflite_layouts
    from toolkit.distill.checkpoints import load_checkpoint

    x = _tiny_rows(tiny_run)
    model, _, _ = load_checkpoint(next((tiny_run / "distill").glob("student_kd.pt")))
    sample = torch.from_numpy(x[:1])
    fp32 = tflite.export_tflite(model, sample, tmp_path / "fp32.tflite")
    writers = tflite_layouts(model, sample, x[:16], layout="NCHW", ios=("int8", "float"))
    dst = tmp_path / "int8.tflite"
    settings = search_int8_layout(fp32, dst, writers, x[32:], backend="litert", rounds=1, runs=50)
    search = settings.layout_search
    assert {t.layout for t in search.tried} == {
        f"{g}, {io} io" for g in ("per-channel", "per-tensor") for io in ("int8", "float")
    }
    assert_kept_the_fastest_passing(search)
    granularity, io, _ = search.kept.replace(",", "").split()
    assert settings.per_channel == (granularity == "per-channel") and settings.io == io
    from benchmarks.outputs import run_file

    assert run_file(dst, x[:4], backend="litert").shape == (4, 10)  # batch-1 file, run row by row


def test_report_compare_sets_the_same_op_of_the_same_file_side_by_side():
    from benchmarks.profile import ProfileFile
    from toolkit.report.blocks import blocks_to_markdown
    from toolkit.report.time_breakdown import side_by_side_blocks

    x86 = _profile("int8", 30.0, [("QLinearConv", "uint8", 20.0), ("QuantizeLinear", "float", 0.5)])
    arm = _profile("int8", 90.0, [("QLinearConv", "uint8", 70.0), ("QuantizeLinear", "float", 8.0)])
    a, b = (ProfileFile({}, 1, 10, 2, [p]) for p in (x86, arm))
    text = blocks_to_markdown(side_by_side_blocks([("pc", a), ("pi", b)]))
    assert "| file | op | pc µs/run (dtype) | pi µs/run (dtype) |" in text
    assert "| student_int8.onnx | QLinearConv | 20.0 (int8) | 70.0 (int8) |" in text
    # under 5 % of the file's time on the PC, but 10 % on the board: shown
    assert "| student_int8.onnx | QuantizeLinear | 0.5 (fp32) | 8.0 (fp32) |" in text
    assert side_by_side_blocks([("pc", a), ("pi", ProfileFile({}, 1, 10, 2, []))]) == []
