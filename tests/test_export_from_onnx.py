"""`edgekd export --from model.onnx`: a checked bundle from an ONNX file the user already has."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from typer.testing import CliRunner  # noqa: E402

from export._files import quiet_converters, sha256_file  # noqa: E402
from export.bundle import validate_manifest  # noqa: E402
from export.from_onnx import export_from_onnx  # noqa: E402
from export.onnx import export_onnx  # noqa: E402
from export.onnx2tf import onnx_to_tflite  # noqa: E402
from tests.conftest import fitted_student  # noqa: E402
from toolkit.cli.main import app  # noqa: E402
from toolkit.errors import DataError, ExportError  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    """model.onnx, calib.npy (x only) and test.npz (x, y) as a user would bring them."""
    model, x, y = fitted_student()
    tmp = tmp_path_factory.mktemp("user")
    with quiet_converters():
        export_onnx(model, torch.from_numpy(x[:1]), tmp / "model.onnx")
    np.save(tmp / "calib.npy", x[:128])
    np.savez(tmp / "test.npz", x=x[128:], y=y[128:])
    return tmp


def _manifest(out):
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    validate_manifest(manifest)
    return manifest


def test_cli_end_to_end(user_files, tmp_path):
    out = tmp_path / "out"
    args = ["export", "--from", str(user_files / "model.onnx"), "--out", str(out)]
    args += ["--calibration", str(user_files / "calib.npy"), "--test", str(user_files / "test.npz")]
    r = runner.invoke(app, [*args, "--int8", "static", "--fp16", "--max-accuracy-drop", "1"])
    assert r.exit_code == 0, r.output + repr(r.exception)
    manifest = _manifest(out)
    files = {m["file"]: m for m in manifest["models"]}
    assert list(files) == ["model.onnx", "model_int8.onnx", "model_fp16.onnx"]
    assert [m["precision"] for m in manifest["models"]] == ["fp32", "int8", "fp16"]
    assert manifest["failures"] == [] and manifest["input"]["shape"] == [None, 1, 28, 28]
    assert manifest["labels"] == [str(i) for i in range(10)]
    src_sha = sha256_file(user_files / "model.onnx")
    assert files["model.onnx"]["sha256"] == src_sha  # copied as it is
    for name, m in files.items():
        assert m["sha256"] == sha256_file(out / "bundle" / name) and m["source_onnx_sha256"] == src_sha
        p = m["parity"]
        assert p["passed"] and p["n"] == 384 and p["labels"] == "test data" and p["accuracy"] > 0.95
    assert files["model.onnx"]["parity"]["max_abs_diff"] == 0.0
    budget = files["model_int8.onnx"]["quantization"]["accuracy_budget"]
    assert budget["met"] and budget["drop"] <= 1 and budget["max_accuracy_drop"] == 1
    assert files["model_int8.onnx"]["quantization"]["calibration_samples"] == 128
    assert "model_int8.onnx" in r.output and "kept float:" in r.output
    assert (tmp_path / "out" / "bundle.tar.gz").is_file()


def test_parity_failure_is_listed_kept_and_exits_1(user_files, tmp_path, monkeypatch, capsys):
    """An fp16 tolerance no float16 file can meet: FAIL in the table, in `failures`, exit 1, file kept."""
    from export.parity import TOLERANCES
    from tests.conftest import edgekd_main

    monkeypatch.setitem(TOLERANCES, "fp16", {"max_abs_diff": 1e-9, "top1_agreement": 0.98})
    out = tmp_path / "out"
    code, err = edgekd_main(
        monkeypatch, capsys, "export", "--from", user_files / "model.onnx", "--out", out, "--fp16",
        "--int8", "dynamic", "--test", user_files / "test.npz",
    )  # fmt: skip
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        f"error: {out / 'bundle'}: 1 file(s) failed: 1 missed their parity tolerance (kept for inspection) "
        "(see above)"
    )
    assert "PARITY FAILED" in err and "FAIL" in err and "Traceback" not in err
    manifest = _manifest(out)
    files = {m["file"]: m for m in manifest["models"]}
    assert list(files) == ["model.onnx", "model_dynamic_int8.onnx", "model_fp16.onnx"]
    assert [files[f]["parity"]["passed"] for f in files] == [True, True, False]
    [failure] = manifest["failures"]
    diff = files["model_fp16.onnx"]["parity"]["max_abs_diff"]
    assert failure == {
        "name": "model",
        "format": "onnx",
        "precision": "fp16",
        "file": "model_fp16.onnx",
        "error": f"parity outside the fp16 tolerance: max |diff| {diff:.3g} > 1e-09",
    }
    assert diff > 1e-4  # a real float16 rounding error, not a contrived one
    assert sha256_file(out / "bundle" / "model_fp16.onnx") == files["model_fp16.onnx"]["sha256"]
    assert (out / "bundle.tar.gz").is_file()


def test_dynamic_int8_without_data_checks_on_random_inputs(user_files, tmp_path):
    manifest = export_from_onnx(user_files / "model.onnx", tmp_path, int8="dynamic")
    validate_manifest(manifest)
    dyn = manifest.models[1]
    assert dyn.file == "model_dynamic_int8.onnx" and dyn.precision == "dynamic-int8"
    assert dyn.parity.labels == "source predictions" and dyn.parity.n == 64
    assert dyn.quantization.mode == "dynamic"


def _edgekd(*args):
    return subprocess.run([sys.executable, "-m", "toolkit.cli.main", *args], capture_output=True, text=True)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--int8", "static"], "error: --calibration/calibration: static int8 needs calibration data"),
        (
            ["--max-accuracy-drop", "1"],
            "error: --max-accuracy-drop/max_accuracy_drop: applies to --int8 static",
        ),
        ([], None),  # --out missing: named below
    ],
)
def test_missing_option_is_one_line_naming_it(user_files, tmp_path, extra, message):
    out = ["--out", str(tmp_path / "out")] if message else []
    r = _edgekd("export", "--from", str(user_files / "model.onnx"), *out, *extra)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert lines[0].startswith(message or "error: --out: --from needs a folder")
    assert not (tmp_path / "out" / "bundle" / "manifest.json").exists()


@pytest.mark.parametrize(
    "content,fault",
    [
        (b"", "0 bytes, no graph nodes"),
        (bytes(range(256)) * 2, "512 bytes that do not parse: Error parsing message"),
    ],
    ids=["empty", "random-bytes"],
)
def test_file_that_is_not_onnx_is_one_line(tmp_path, content, fault):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(content)
    r = _edgekd("export", "--from", str(bad), "--out", str(tmp_path / "out"))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"error: {bad}: not an ONNX model ({fault}")
    assert not (tmp_path / "out").exists()


def test_run_dir_and_from_options_do_not_mix(user_files, tmp_path):
    r = _edgekd("export", str(tmp_path), "--fp16")
    assert r.returncode == 1 and r.stderr.strip() == "error: --fp16: only with --from model.onnx"


@pytest.mark.parametrize(
    "content,message",
    [
        (np.zeros((4, 3, 28, 28), np.float32), "expected float32 model input shaped [None, 1, 28, 28]"),
        (np.zeros((4, 1, 28, 28), np.uint8), "got uint8 [4, 1, 28, 28]"),
    ],
)
def test_calibration_that_does_not_fit_the_model(user_files, tmp_path, content, message):
    np.save(tmp_path / "bad.npy", content)
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        export_from_onnx(user_files / "model.onnx", tmp_path, int8="static", calibration=tmp_path / "bad.npy")


_HAS_ONNX2TF = importlib.util.find_spec("onnx2tf") is not None or "EDGEKD_ONNX2TF_PYTHON" in os.environ


@pytest.mark.skipif(_HAS_ONNX2TF, reason="onnx2tf is installed here")
def test_tflite_without_onnx2tf_is_a_failure_naming_the_extra(user_files, tmp_path):
    manifest = export_from_onnx(user_files / "model.onnx", tmp_path, tflite=True)
    validate_manifest(manifest)
    [failure] = manifest.failures
    assert failure.format == "tflite" and failure.precision == "fp32"
    assert "onnx2tf is not installed" in failure.error and "onnx2tf extra" in failure.error
    assert "\n" not in failure.error and [m.file for m in manifest.models] == ["model.onnx"]


def test_onnx2tf_error_paths(user_files, tmp_path):
    with pytest.raises(ValueError, match="int8 TFLite needs calibration data"):
        onnx_to_tflite(user_files / "model.onnx", tmp_path / "m.tflite", int8_dst=tmp_path / "q.tflite")
    # An interpreter without onnx2tf (this one, blocked) gives one line naming the extra to install.
    blocker = tmp_path / "site" / "onnx2tf.py"
    blocker.parent.mkdir()
    blocker.write_text("raise ImportError('blocked for the test')\n")
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={blocker.parent} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    with pytest.raises(ExportError) as err:
        onnx_to_tflite(user_files / "model.onnx", tmp_path / "m.tflite", python=python)
    msg = str(err.value)
    assert msg.startswith(f"{user_files / 'model.onnx'}: onnx2tf is not installed for {python}")
    assert "install edgekd's onnx2tf extra" in msg and "\n" not in msg
    assert not (tmp_path / "m.tflite").exists()


@pytest.mark.slow
@pytest.mark.skipif(not _HAS_ONNX2TF, reason="onnx2tf not installed (EDGEKD_ONNX2TF_PYTHON names one)")
def test_onnx2tf_writes_checked_tflite_files(user_files, tmp_path):
    out = tmp_path / "out"
    args = ["export", "--from", str(user_files / "model.onnx"), "--out", str(out), "--tflite", "--fp16"]
    args += ["--calibration", str(user_files / "calib.npy"), "--test", str(user_files / "test.npz")]
    r = runner.invoke(app, [*args, "--int8", "static"])
    assert r.exit_code == 0, r.output + repr(r.exception)
    tflite = [m for m in _manifest(out)["models"] if m["format"] == "tflite"]
    assert [m["precision"] for m in tflite] == ["fp32", "fp16", "int8"]
    assert all(m["parity"]["passed"] and m["batch"] == 1 for m in tflite)
    assert tflite[0]["parity"]["max_abs_diff"] < 1e-4
