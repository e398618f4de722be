"""Tests for the backend options (execution providers, XNNPACK, delegates, torch.compile) and describe()."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.backends import backend_names, load_backend
from benchmarks.harness import BenchConfig, measure
from tests.conftest import onnx_classifier

ROOT = Path(__file__).resolve().parent.parent
FAST = {"warmup": 1, "min_runs": 5, "min_time_s": 0.0}
NOOP_DELEGATE_C = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
/* TfLiteDelegate's layout; Prepare claims no nodes, so the model runs on the CPU kernels unchanged. */
typedef struct D { void* data; int (*prepare)(void*, struct D*); void* from; void* to; void* free_handle;
                   int64_t flags; void* opaque; } D;
static int prepare(void* context, D* delegate) { return 0; }
D* tflite_plugin_create_delegate(char** keys, char** values, size_t n, void (*report)(const char*)) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(keys[i], "fail") == 0) { report("noop delegate: asked to fail"); return NULL; }
  D* d = calloc(1, sizeof(D));
  d->prepare = prepare;
  return d;
}
void tflite_plugin_destroy_delegate(D* d) { free(d); }
"""


def _small_cnn():
    import torch

    torch.manual_seed(0)
    layers = [torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3)]
    return torch.nn.Sequential(*layers).eval()


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    weight = np.eye(16, 3, dtype=np.float32)
    return onnx_classifier(tmp_path_factory.mktemp("onnx") / "tiny.onnx", weight, side=4)


@pytest.fixture(scope="module")
def cnn_tflite(tmp_path_factory) -> Path:
    litert_torch = pytest.importorskip("litert_torch")
    import torch

    path = tmp_path_factory.mktemp("tflite") / "cnn.tflite"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LITERT_TORCH_SHOW_PROGRESS", "n")
        litert_torch.convert(_small_cnn(), (torch.zeros(1, 1, 8, 8),)).export(str(path))
    return path


@pytest.fixture(scope="module")
def noop_delegate(tmp_path_factory) -> Path:
    """An external delegate library compiled here, so delegate loading is tested for real."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler to build the test delegate")
    folder = tmp_path_factory.mktemp("delegate")
    (folder / "noop.c").write_text(NOOP_DELEGATE_C)
    subprocess.run([cc, "-shared", "-fPIC", "-o", folder / "libnoop.so", folder / "noop.c"], check=True)
    return folder / "libnoop.so"


def _x(batch: int, side: int) -> np.ndarray:
    return np.random.default_rng(batch).standard_normal((batch, 1, side, side), dtype=np.float32)


@pytest.mark.parametrize("name", backend_names())
def test_every_backend_has_the_interface(name):
    module = load_backend(name)  # the runtime itself is imported in load(), except onnxruntime's
    for fn in ("load", "describe", "input_spec", "prepare", "invoke", "run", "version"):
        assert callable(getattr(module, fn)), f"{name}.{fn}"


# --- onnxruntime ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "short, full", [("tensorrt", "TensorrtExecutionProvider"), ("cuda", "CUDAExecutionProvider")]
)
def test_ort_absent_provider_message(tiny_onnx, short, full):
    import onnxruntime as ort

    from benchmarks.backends import onnxruntime as backend

    if full in ort.get_available_providers():
        pytest.skip(f"this onnxruntime build has {full}")
    expected = (
        f"{tiny_onnx}: execution provider {full} is not in this onnxruntime {ort.__version__} build "
        f"(it has {', '.join(ort.get_available_providers())}); install onnxruntime-gpu in place of "
        "onnxruntime (on a Jetson: the onnxruntime-gpu wheel built for your JetPack)"
    )
    with pytest.raises(ValueError) as info:
        backend.load(tiny_onnx, threads=1, providers=[short])
    assert str(info.value) == expected


def test_ort_provider_names():
    from benchmarks.backends.onnxruntime import PROVIDERS, provider_names

    assert provider_names("m.onnx", None) == ["CPUExecutionProvider"]
    assert provider_names("m.onnx", ["cpu"]) == ["CPUExecutionProvider"]
    assert provider_names("m.onnx", ["CPU", "CPUExecutionProvider"]) == ["CPUExecutionProvider"] * 2
    assert (
        PROVIDERS["cuda"] == "CUDAExecutionProvider" and PROVIDERS["tensorrt"] == "TensorrtExecutionProvider"
    )


@pytest.mark.parametrize(
    "options, message",
    [
        ({"providers": ["npu"]}, r"tiny\.onnx: unknown execution provider 'npu'; expected one of cpu, cuda"),
        ({"providers": ["FooExecutionProvider"]}, "execution provider FooExecutionProvider is not in this"),
        (
            {"trt_fp16": True},
            r"trt_fp16 needs the tensorrt provider, got providers \['CPUExecutionProvider'\]",
        ),
        (
            {"optimization": "max"},
            "unknown optimization 'max'; expected one of disabled, basic, extended, all",
        ),
    ],
)
def test_ort_rejects_bad_options(tiny_onnx, options, message):
    from benchmarks.backends import onnxruntime as backend

    with pytest.raises(ValueError, match=message):
        backend.load(tiny_onnx, threads=1, **options)


def test_ort_describe_and_optimization_levels(tiny_onnx):
    from benchmarks.backends import onnxruntime as backend

    x = _x(3, 4)
    expected = x.reshape(3, 16)[:, :3]
    for level in ("disabled", "basic", "extended", "all"):
        handle = backend.load(tiny_onnx, threads=2, providers=["cpu"], optimization=level)
        np.testing.assert_allclose(backend.run(handle, x), expected, rtol=1e-6, atol=1e-6)
    assert backend.describe(handle) == {
        "providers": ["CPUExecutionProvider"],
        "trt_fp16": False,
        "threads": 2,
        "graph_optimization": "all",
    }


# --- litert / tflite_runtime ---------------------------------------------------------------------


def test_xnnpack_off_gives_the_same_outputs(cnn_tflite):
    from benchmarks.backends import litert

    on = litert.load(cnn_tflite, threads=1)
    off = litert.load(cnn_tflite, threads=1, xnnpack=False)
    x = _x(1, 8)
    np.testing.assert_allclose(litert.run(off, x), litert.run(on, x), rtol=1e-5, atol=1e-5)
    assert litert.describe(off) == {
        "runtime": "litert",
        "threads": 1,
        "xnnpack": False,
        "delegate": None,
        "delegate_options": {},
    }
    assert litert.describe(on)["xnnpack"] is True


def test_external_delegate_runs_with_its_options(cnn_tflite, noop_delegate):
    from benchmarks.backends import litert

    handle = litert.load(cnn_tflite, threads=1, delegate=str(noop_delegate), delegate_options={"level": 2})
    x = _x(1, 8)
    np.testing.assert_allclose(
        litert.run(handle, x), litert.run(litert.load(cnn_tflite, threads=1), x), atol=1e-6
    )
    info = litert.describe(handle)
    assert info["delegate"] == str(noop_delegate) and info["delegate_options"] == {"level": "2"}


def test_delegate_errors(cnn_tflite, noop_delegate, tmp_path):
    from benchmarks.backends import litert

    missing = tmp_path / "libmissing.so"
    not_a_library = tmp_path / "notes.so"
    not_a_library.write_text("not ELF")
    model, noop = re.escape(str(cnn_tflite)), re.escape(str(noop_delegate))
    cases = [
        (
            {"delegate": str(missing)},
            rf"{re.escape(str(missing))}: delegate library not found \(.* {model}\)",
        ),
        (
            {"delegate": str(not_a_library)},
            rf"{re.escape(str(not_a_library))}: cannot load delegate for {model} \(.+\)",
        ),
        (
            {"delegate": str(noop_delegate), "delegate_options": {"fail": 1}},
            rf"{noop}: cannot load delegate for {model} \(noop delegate: asked to fail\)",
        ),
        ({"delegate_options": {"a": 1}}, rf"{model}: delegate_options given without a delegate"),
    ]
    for options, message in cases:
        with pytest.raises(ValueError, match=rf"^{message}$"):
            litert.load(cnn_tflite, threads=1, **options)


def test_unknown_op_version_names_the_runtime(cnn_tflite, tmp_path):
    """A model from a newer converter: tflite_runtime is told to use ai-edge-litert."""
    from ai_edge_litert import interpreter as api
    from ai_edge_litert.tools import flatbuffer_utils

    from benchmarks.backends.litert import _load

    model = flatbuffer_utils.read_model(str(cnn_tflite))
    for code in model.operatorCodes:
        code.version = 99  # newer than any runtime knows
    newer = tmp_path / "newer.tflite"
    flatbuffer_utils.write_model(model, str(newer))
    # The real interpreter fails; the runtime label picks the message tflite_runtime users see.
    path = re.escape(str(newer))
    op_error = r"Didn't find op for builtin opcode '\w+' version '99'\. An older version .*newer model\?"
    too_old = rf"^{path}: tflite_runtime .+ cannot run this model \({op_error}\); use ai-edge-litert$"
    with pytest.raises(ValueError, match=too_old):
        _load(api, newer, threads=1, runtime="tflite_runtime")
    with pytest.raises(ValueError, match=rf"^{path}: litert cannot build an interpreter \({op_error}\)$"):
        _load(api, newer, threads=1, runtime="litert")


def test_harness_passes_backend_options(cnn_tflite, tiny_onnx):
    for path, options in ((cnn_tflite, {"xnnpack": False}), (tiny_onnx, {"optimization": "disabled"})):
        result = measure(BenchConfig(path, backend_options=options, **FAST))
        assert result["latency"]["count"] >= FAST["min_runs"]
    with pytest.raises(ValueError, match="unknown optimization 'max'"):
        measure(BenchConfig(tiny_onnx, backend_options={"optimization": "max"}, **FAST))


# --- torch -----------------------------------------------------------------------------------------


def test_torch_backend_matches_the_module(tmp_path):
    torch = pytest.importorskip("torch")
    from export import torch_backend as backend
    from export.torch_program import export_program

    module = _small_cnn()
    path = export_program(module, torch.zeros(1, 1, 8, 8), tmp_path / "cnn.pt2")
    handle = backend.load(path, threads=1)
    assert backend.input_spec(handle) == ("input", [None, 1, 8, 8], np.dtype(np.float32))
    for batch in (1, 3):  # exported with a dynamic batch dimension
        x = _x(batch, 8)
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(backend.run(handle, x), expected, rtol=1e-5, atol=1e-6)
    assert backend.describe(handle) == {"compile": False, "threads": 1, "torch_version": torch.__version__}
    # Compiling happens on the first call (seconds), so only the wrapping is checked here.
    compiled = backend.load(path, threads=1, compile=True)
    assert backend.describe(compiled)["compile"] is True
    assert isinstance(compiled.module._orig_mod, torch.fx.GraphModule)


def test_torch_backend_rejects_other_files(tiny_onnx):
    pytest.importorskip("torch")
    from export import torch_backend as backend

    with pytest.raises(
        ValueError, match=rf"^{re.escape(str(tiny_onnx))}: not a torch\.export program \(.+\)$"
    ):
        backend.load(tiny_onnx, threads=1)


# --- scripts ----------------------------------------------------------------------------------------


def test_harness_overhead_script_shows_help():
    script = ROOT / "scripts" / "bench_harness_overhead.py"
    proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "BUNDLE_DIR" in proc.stdout and "--threads" in proc.stdout


def test_repeatability_script_sorts_files_into_within_flagged_and_missed(tmp_path):
    import json

    from tests.report_data import RECORDS, as_rounds

    kd, teacher, tflite = RECORDS[1], RECORDS[2], RECORDS[3]
    calls = {
        "a.jsonl": [*as_rounds(kd), *as_rounds(teacher), *as_rounds(tflite)],
        # kd 2 % slower: within; teacher 30 % slower with rounds 17 % apart: flagged; tflite 10 %: a miss
        "b.jsonl": [
            *as_rounds(kd, (1.0, 1.02, 1.04)),
            *as_rounds(teacher, (1.1, 1.3, 1.32)),
            *as_rounds(tflite, (1.09, 1.1, 1.11)),
        ],
    }
    for name, recs in calls.items():
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in recs))
    script = ROOT / "scripts" / "bench_repeatability.py"
    args = [sys.executable, str(script), str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1, proc.stderr  # a miss
    assert lines[1].startswith("student_kd onnx fp32") and lines[1].endswith("+2.0%  within 5%")
    assert lines[2].endswith("+30.0%  flagged unstable (one round moves it 1%/8%)")  # 0.1 / 1.3
    assert lines[3].endswith("+10.0%  MISS: outside 5%, not flagged")
    assert lines[-1] == "3 files: 1 within 5%, 1 outside but flagged unstable, 1 missed"
    proc = subprocess.run([*args, "--rounds", "1"], capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.splitlines()[1].split()[3] == "1"  # the rounds column
