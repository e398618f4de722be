"""TFLite export modes (fp32, fp16, dynamic-range int8, full-integer int8), NHWC input and float I/O."""

from __future__ import annotations

import os
import re
import sys
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("litert_torch")

from benchmarks.outputs import run_file  # noqa: E402
from export.parity import TOLERANCES, check_parity, runtime_status  # noqa: E402
from export.tflite import (  # noqa: E402
    export_tflite,
    export_tflite_dynamic_int8,
    export_tflite_fp16,
    export_tflite_int8,
)

N_TEST = 200


def blobs(n: int, side: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` noisy (1, side, side) images; the class (0-9) is which of 10 grid cells holds a bright square."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.normal(0.0, 0.3, (n, 1, side, side)).astype(np.float32)
    size = max(2, side // 5)
    for i, k in enumerate(y):
        r, c = (k // 4) * side // 3 + 1, (k % 4) * side // 4 + 1
        x[i, 0, r : r + size, c : c + size] += 2.0
    return x, y.astype(np.int64)


def fit(model, x: np.ndarray, y: np.ndarray, *, steps: int = 120):
    """A few Adam steps: a trained net has real logit margins, so int8 agreement means something."""
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(xs), (64,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(xs[idx]), ys[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """cnn_student trained on blobs, its test data and torch logits, and one file per TFLite mode."""
    from toolkit.models import ModelSpec, create_model

    torch.manual_seed(0)
    model = create_model(ModelSpec(arch="cnn_student", labels=tuple(str(i) for i in range(10))))
    x_train, y_train = blobs(1000, 28)
    fit(model, x_train, y_train)
    x, y = blobs(N_TEST, 28, seed=1)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    tmp = tmp_path_factory.mktemp("student")
    sample = torch.from_numpy(x[:1])

    # PT2E calibration runs one image per call (~70 ms each here); 16 are enough for these blobs.
    calib = [torch.from_numpy(x_train[i : i + 1]) for i in range(16)]
    settings = {
        "fp32": export_tflite(model, sample, tmp / "fp32.tflite"),
        "fp16": export_tflite_fp16(model, sample, tmp / "fp16.tflite"),
        "dynamic-int8": export_tflite_dynamic_int8(model, sample, tmp / "dynamic-int8.tflite"),
        "int8": export_tflite_int8(model, sample, tmp / "int8.tflite", calib),
        "int8-float-io": export_tflite_int8(model, sample, tmp / "int8-float-io.tflite", calib, io="float"),
    }
    return SimpleNamespace(model=model, x=x, y=y, ref=ref, tmp=tmp, settings=settings, calib=calib)


MODES = [  # (file stem, precision for TOLERANCES)
    ("fp32", "fp32"),
    ("fp16", "fp16"),
    ("dynamic-int8", "dynamic-int8"),
    ("int8", "int8"),
    ("int8-float-io", "int8"),
]


@pytest.mark.parametrize("stem,precision", MODES)
def test_each_mode_passes_parity_with_its_tolerance(student, stem, precision):
    x, y, ref, tmp = student.x, student.y, student.ref, student.tmp
    rec = check_parity(tmp / f"{stem}.tflite", x, y, ref, precision=precision)
    assert rec.passed, rec
    assert rec.n == N_TEST and rec.tolerance == TOLERANCES[precision] and rec.layout == "NCHW"
    assert rec.torch_accuracy > 0.9  # the net learned the task, so agreement is not luck
    assert rec.top1_agreement >= 0.98 and abs(rec.accuracy - rec.torch_accuracy) <= 0.02
    limit = {"fp32": 1e-4, "fp16": 2e-2, "dynamic-int8": 0.5}.get(stem)
    if limit is not None:
        assert rec.max_abs_diff < limit, rec.max_abs_diff
    # ai_edge_litert ran it; tflite_runtime is not installed in this venv (numpy 2).
    assert rec.runtimes["ai_edge_litert"] == "ok"
    assert rec.runtimes["tflite_runtime"] in ("ok", "not installed")


def test_settings_name_the_mode(student):
    settings = student.settings
    assert settings["fp16"].weights == "float16" and settings["fp16"].activations == "float32"
    assert settings["dynamic-int8"].mode == "dynamic" and settings["dynamic-int8"].weights == "int8"
    assert settings["int8"].io == "int8" and settings["int8-float-io"].io == "float"
    assert settings["int8"].calibration_samples == 16 and settings["int8"].per_channel is True


def test_sizes_shrink_with_precision(student):
    tmp = student.tmp
    size = {stem: (tmp / f"{stem}.tflite").stat().st_size for stem, _ in MODES}
    # int8 keeps per-channel scales and int64 zero points for weights and biases, which the hybrid
    # dynamic file does not; at 24 k parameters that puts the two int8 files within ~10% of each other.
    assert max(size["int8"], size["dynamic-int8"]) < size["fp16"] < size["fp32"]
    assert size["fp32"] / size["fp16"] > 1.8
    assert size["fp32"] / size["dynamic-int8"] > 3.3 and size["fp32"] / size["int8"] > 3.1
    assert size["int8-float-io"] - size["int8"] < 512  # two tensors and two ops more


def _interpreter(path):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    return interp


def _op_names(path) -> list[str]:
    """The file's operators in execution order (the interpreter's own list shows delegated nodes)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    return [names[codes[op.opcodeIndex]] for op in model.subgraphs[0].operators]


def test_io_int8_and_float_inputs_and_identical_outputs(student):
    x, tmp = student.x, student.tmp
    q, f = _interpreter(tmp / "int8.tflite"), _interpreter(tmp / "int8-float-io.tflite")
    assert q.get_input_details()[0]["dtype"] == np.int8 and q.get_output_details()[0]["dtype"] == np.int8
    assert (
        f.get_input_details()[0]["dtype"] == np.float32 and f.get_output_details()[0]["dtype"] == np.float32
    )
    assert f.get_input_details()[0]["name"] == q.get_input_details()[0]["name"] == "serving_default_args_0"
    ops = _op_names(tmp / "int8-float-io.tflite")
    assert ops[0] == "QUANTIZE" and ops[-1] == "DEQUANTIZE" and ops[1:-1] == _op_names(tmp / "int8.tflite")
    scale = q.get_output_details()[0]["quantization"][0]
    # The same integer graph inside: float I/O only moves the (de)quantization into the file.
    np.testing.assert_allclose(
        run_file(tmp / "int8-float-io.tflite", x), run_file(tmp / "int8.tflite", x), rtol=0, atol=scale * 1.01
    )


def test_intermediate_tensor_names_are_dropped(student):
    interp = _interpreter(student.tmp / "fp32.tflite")
    names = [t["name"] for t in interp.get_tensor_details()]
    assert "serving_default_args_0" in names
    assert not any("torch.nn" in n or "toolkit." in n for n in names), names


@pytest.mark.parametrize("mode,twin", [("fp32", "fp32"), ("int8", "int8-float-io")])
def test_nhwc_file_takes_nhwc_and_matches_nchw(student, mode, twin):
    model, x, y, ref, tmp = student.model, student.x, student.y, student.ref, student.tmp
    sample, nhwc = torch.from_numpy(x[:1]), tmp / f"{mode}-nhwc.tflite"
    if mode == "fp32":
        export_tflite(model, sample, nhwc, layout="NHWC")
    else:  # same calibration as its NCHW twin, so the same scales
        export_tflite_int8(model, sample, nhwc, student.calib, io="float", layout="NHWC")
    assert tuple(_interpreter(nhwc).get_input_details()[0]["shape"]) == (1, 28, 28, 1)
    assert tuple(_interpreter(tmp / f"{twin}.tflite").get_input_details()[0]["shape"]) == (1, 1, 28, 28)
    from benchmarks.backends import load_backend

    litert = load_backend("litert")
    assert litert.input_spec(litert.load(str(nhwc), threads=1))[1] == [1, 28, 28, 1]
    out_nhwc = run_file(nhwc, np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(out_nhwc, run_file(tmp / f"{twin}.tflite", x), rtol=1e-5, atol=1e-5)
    rec = check_parity(nhwc, x, y, ref, precision=mode, layout="NHWC")  # check_parity transposes x itself
    assert rec.passed and rec.layout == "NHWC" and rec.n == N_TEST


BAD_OPTIONS = [
    (dict(layout="nhwc"), "layout must be one of NCHW, NHWC, got 'nhwc'"),
    (dict(io="uint8"), "io must be one of int8, float, got 'uint8'"),
]


@pytest.mark.parametrize("kwargs,message", BAD_OPTIONS)
def test_bad_options_raise_one_line_value_error(tmp_path, kwargs, message):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    with pytest.raises(ValueError) as err:
        export_tflite_int8(model, torch.zeros(1, 1, 4, 4), tmp_path / "m.tflite", [], **kwargs)
    assert str(err.value) == message
    assert not list(tmp_path.iterdir())


def test_nhwc_needs_a_4d_sample(tmp_path):
    model = torch.nn.Linear(16, 3).eval()
    with pytest.raises(
        ValueError, match=r"layout='NHWC' needs a 4-D \(N, C, H, W\) sample, got shape \[1, 16\]"
    ):
        export_tflite(model, torch.zeros(1, 16), tmp_path / "m.tflite", layout="NHWC")


def test_parity_rejects_unknown_precision_and_layout(student):
    x, y, ref, tmp = student.x, student.y, student.ref, student.tmp
    with pytest.raises(ValueError, match="precision must be one of"):
        check_parity(tmp / "fp32.tflite", x, y, ref, precision="int4")
    with pytest.raises(ValueError, match="layout must be NCHW, NHWC or NL, got 'CHW'"):
        check_parity(tmp / "fp32.tflite", x, y, ref, precision="fp32", layout="CHW")


def _bump_conv_version(src, dst):
    """Copy of a .tflite file whose CONV_2D claims version 99: what a newer converter would write."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(src))
    for code in model.operatorCodes:
        if code.builtinCode == schema.BuiltinOperator.CONV_2D:
            code.version = 99
    dst.write_bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    return dst


def test_runtime_that_rejects_an_op_version_is_one_line_not_a_crash(student, tmp_path):
    x, ref, tmp = student.x, student.ref, student.tmp
    newer = _bump_conv_version(tmp / "fp32.tflite", tmp_path / "conv_v99.tflite")
    status = runtime_status(newer, x[:4], ref[:4], backend="litert", tolerance=TOLERANCES["fp32"])
    assert status == "rejects: op CONV_2D version 99"
    ok = runtime_status(tmp / "fp32.tflite", x[:4], ref[:4], backend="litert", tolerance=TOLERANCES["fp32"])
    assert ok == "ok"
    wrong = ref[:4] + 1.0
    status = runtime_status(tmp / "fp32.tflite", x[:4], wrong, backend="litert", tolerance=TOLERANCES["fp32"])
    assert status.startswith("outside tolerance: max_abs_diff 1")


def test_tflite_runtime_status_when_not_installed(student, monkeypatch):
    import benchmarks.backends as backends

    monkeypatch.setattr(backends, "available", lambda name: name != "tflite_runtime")
    x, y, ref, tmp = student.x, student.y, student.ref, student.tmp
    rec = check_parity(tmp / "fp32.tflite", x[:8], y[:8], ref[:8], precision="fp32")
    assert rec.runtimes == {"ai_edge_litert": "ok", "tflite_runtime": "not installed"}


TFLITE_RUNTIME_CHECK = """
import json, sys
import numpy as np
from export.parity import TOLERANCES, runtime_status
data = np.load(sys.argv[1])
out = {}
for arg in sys.argv[2:]:
    path, precision, layout = arg.split(",")
    x = data["x"] if layout == "NCHW" else np.ascontiguousarray(data["x"].transpose(0, 2, 3, 1))
    out[path.rsplit("/", 1)[-1]] = runtime_status(
        path, x, data["ref"], backend="tflite_runtime", tolerance=TOLERANCES[precision]
    )
print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="tflite-runtime 2.14 has wheels only up to 3.11")
def test_tflite_runtime_2_14_runs_each_mode_or_rejects_it_on_one_line(student, tmp_path, package_index):
    """What a board with only tflite_runtime (its last release, numpy 1) makes of each file."""
    import json
    import subprocess
    from pathlib import Path

    model, x, ref, tmp = student.model, student.x, student.ref, student.tmp
    nhwc = export_tflite(model, torch.from_numpy(x[:1]), tmp_path / "fp32-nhwc.tflite", layout="NHWC")
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, env=env, capture_output=True)
    pip = [venv / "bin" / "python", "-m", "pip", "install", "-q", "tflite-runtime==2.14.0", "numpy<2"]
    subprocess.run(pip, check=True, env=env, capture_output=True, timeout=300)
    np.savez(tmp_path / "data.npz", x=x[:50], ref=ref[:50])
    files = [f"{tmp / f'{stem}.tflite'},{precision},NCHW" for stem, precision in MODES] + [
        f"{nhwc},fp32,NHWC"
    ]
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])  # edgekd's export and benchmarks, no torch
    proc = subprocess.run(
        [venv / "bin" / "python", "-c", TFLITE_RUNTIME_CHECK, tmp_path / "data.npz", *files],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout.splitlines()[-1])
    # PT2E marks its per-channel dynamic FULLY_CONNECTED as version 12, which 2.14 predates.
    assert status.pop("dynamic-int8.tflite") == "rejects: op FULLY_CONNECTED version 12"
    assert status == dict.fromkeys(
        ["fp32.tflite", "fp16.tflite", "int8.tflite", "int8-float-io.tflite", "fp32-nhwc.tflite"], "ok"
    )


def test_bundle_accuracy_of_an_nhwc_file_uses_the_transposed_test_data(student, tmp_path):
    import shutil

    from benchmarks.bundle import run_suite
    from benchmarks.suite import Suite

    bundle = tmp_path / "bundle"
    (bundle / "data").mkdir(parents=True)
    shutil.copy(student.tmp / "fp32.tflite", bundle / "nchw.tflite")
    export_tflite(student.model, torch.from_numpy(student.x[:1]), bundle / "nhwc.tflite", layout="NHWC")
    # Raw uint8 test images that the manifest's preprocessing maps back to (about) the float ones.
    np.savez(
        bundle / "data" / "test.npz", x=np.clip((student.x + 1) * 64, 0, 255).astype(np.uint8), y=student.y
    )
    from export._files import sha256_file
    from tests.conftest import manifest_dict, write_manifest_for

    entry = {"role": "student", "format": "tflite", "precision": "fp32"}
    pre = {"scale": 1 / 64, "mean": [1.0], "std": [1.0]}
    spec = dict(manifest_dict(None, [])["input"], preprocessing=pre)
    test_data = {"file": "data/test.npz", "n": N_TEST, "sha256": sha256_file(bundle / "data" / "test.npz")}
    models = [
        dict(entry, name="nchw", file="nchw.tflite"),
        dict(entry, name="nhwc", file="nhwc.tflite", layout="NHWC"),
    ]
    write_manifest_for(bundle, models, input=spec, test_data=test_data)
    done = run_suite(bundle, tmp_path / "results.jsonl", Suite(warmup=1, min_runs=3, min_time_s=0))
    assert not done.errors and not done.skipped, (done.errors, done.skipped)
    by_model = {r.model: r for r in done.records}
    assert by_model["nhwc"].input_shape == [1, 28, 28, 1] and by_model["nchw"].input_shape == [1, 1, 28, 28]
    assert by_model["nhwc"].n_accuracy == by_model["nchw"].n_accuracy == N_TEST
    assert by_model["nhwc"].accuracy == by_model["nchw"].accuracy > 0.9


def test_nhwc_file_with_per_channel_preprocessing_is_planned_without_accuracy(tmp_path):
    from benchmarks.manifest import Preprocessing
    from benchmarks.plan import ModelFile, ModelSet, plan_configs
    from benchmarks.suite import Suite

    np.savez(tmp_path / "test.npz", x=np.zeros((2, 3, 4, 4), np.uint8), y=np.zeros(2, np.int64))
    pre = Preprocessing(scale=1 / 255, mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.2])
    files = [ModelFile(str(tmp_path / "m.tflite"), "m", format="tflite", layout="NHWC")]
    models = ModelSet(files, str(tmp_path / "test.npz"), pre, [None, 3, 4, 4])
    configs, skipped = plan_configs(models, Suite(), scratch=tmp_path)
    assert configs[0].data_path is None and configs[0].input_shape == [None, 4, 4, 3]
    assert skipped == [
        f"{tmp_path / 'm.tflite'}: accuracy not measured for this NHWC file "
        "(per-channel mean [0.5, 0.4, 0.3] cannot be applied to NHWC test data)"
    ]
    models.preprocessing = pre.model_copy(update={"mean": [0.5] * 3})  # equal values collapse to one
    configs, skipped = plan_configs(models, Suite(), scratch=tmp_path)
    assert (
        not skipped and configs[0].preprocessing["mean"] == [0.5] and configs[0].preprocessing["std"] == [0.2]
    )
    with np.load(configs[0].data_path) as data:
        assert data["x"].shape == (2, 4, 4, 3)


def test_manifest_schema_takes_layout_dynamic_int8_and_runtimes():
    from export.bundle import validate_manifest
    from tests.conftest import manifest_dict

    parity = {"n": 1, "max_abs_diff": 0.1, "mean_abs_diff": 0.1, "top1_agreement": 1.0, "accuracy": 1.0}
    parity.update(
        passed=True, layout="NHWC", runtimes={"ai_edge_litert": "ok", "tflite_runtime": "not installed"}
    )
    entry = {
        "name": "student_kd",
        "role": "student",
        "format": "tflite",
        "precision": "dynamic-int8",
        "layout": "NHWC",
        "file": "student_kd_dynamic-int8.tflite",
        "size_bytes": 28368,
        "sha256": "0" * 64,
        "parity": parity,
    }
    manifest = manifest_dict(None, [entry], labels=["a"])
    manifest["input"]["preprocessing"].update(mean=[0.5], std=[0.5])
    validate_manifest(manifest)
    for key, value, message in [
        ("layout", "CHW", "models.0.layout: Input should be 'NCHW', 'NHWC' or 'NL' (got 'CHW')"),
        ("precision", "int4", "models.0.precision: Input should be 'fp32', 'fp16', 'int8' or 'dynamic-int8'"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            validate_manifest(dict(manifest, models=[dict(entry, **{key: value})]), where="m.json")
