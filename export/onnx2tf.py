"""ONNX -> TFLite through onnx2tf (TensorFlow), run in a child process so TensorFlow stays out of ours.

onnx2tf pins exact versions of the whole stack, so it is installed with `--no-deps` and explicit pins (see
docs/guide/export.md), possibly in a separate environment: `python=` or `EDGEKD_ONNX2TF_PYTHON` names its
interpreter.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from export._files import atomic_path
from toolkit.errors import ExportError, InputError

__all__ = ["Onnx2TfRun", "check_onnx2tf_arguments", "onnx_to_tflite"]

_MISSING = 3  # exit code of the child when onnx2tf cannot be imported
_SCRIPT = """
import json, sys
try:
    import onnx2tf
except ImportError as e:
    print(f"cannot import onnx2tf: {e}", file=sys.stderr)
    sys.exit(3)
onnx2tf.convert(**json.loads(sys.argv[1]))
print("edgekd-onnx2tf-version", onnx2tf.__version__)
"""
# onnx2tf's names for what it writes next to each other: <stem>_<suffix>.tflite
_SUFFIXES = {"fp32": "float32", "fp16": "float16", "int8": "integer_quant"}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Onnx2TfRun:
    """One onnx2tf conversion: its version, the input layout of the files, the files written by precision
    and the calibration samples (None without int8)."""

    version: str
    layout: Literal["NCHW", "NHWC"]
    files: dict[str, str]  # precision -> path
    calibration_samples: int | None
    tool: str = "onnx2tf"


def check_onnx2tf_arguments(*, int8_dst, calibration) -> None:
    """Raise `ValueError` when int8 is asked for without calibration data (onnx2tf would download images)."""
    if int8_dst is not None and calibration is None:
        raise InputError(f"{int8_dst}: int8 TFLite needs calibration data (N, C, H, W) float32")
    if calibration is not None and (
        calibration.ndim != 4 or not np.issubdtype(calibration.dtype, np.floating)
    ):
        raise InputError(
            f"calibration: expected float (N, C, H, W), got {calibration.dtype} {calibration.shape}"
        )


def _input_name(src: Path) -> str:
    import onnx

    graph = onnx.load(str(src), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    return next(i.name for i in graph.input if i.name not in weights)


def _reason(text: str) -> str:
    lines = [line.strip() for line in _ANSI.sub("", text).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["no output"])[-1][:300]


def _run(python: str, kwargs: dict, src: Path, timeout_s: float) -> str:
    """Run onnx2tf.convert(**kwargs) in `python`; returns onnx2tf's version."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")  # the child's TensorFlow C++ logs only
    try:
        proc = subprocess.run(
            [python, "-c", _SCRIPT, json.dumps(kwargs)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
        )
    except subprocess.TimeoutExpired as e:
        raise ExportError(f"{src}: onnx2tf did not finish within {timeout_s:.0f} s") from e
    except OSError as e:
        raise ExportError(f"{src}: cannot start {python} for onnx2tf: {e}") from e
    if proc.returncode == _MISSING:
        raise ExportError(
            f"{src}: onnx2tf is not installed for {python}; install edgekd's onnx2tf extra "
            "(docs/guide/export.md gives the --no-deps pins)"
        )
    if proc.returncode != 0:
        raise ExportError(
            f"{src}: onnx2tf failed (exit {proc.returncode}): {_reason(proc.stderr + proc.stdout)}"
        )
    return next((ln.split()[-1] for ln in proc.stdout.splitlines() if ln.startswith("edgekd-onnx2tf")), "?")


def onnx_to_tflite(
    src: str | Path,
    dst: str | Path,
    *,
    fp16_dst: str | Path | None = None,
    int8_dst: str | Path | None = None,
    calibration: np.ndarray | None = None,
    keep_nchw: bool = True,
    python: str | Path | None = None,
    timeout_s: float = 900,
) -> Onnx2TfRun:
    """Convert `src` to a float32 TFLite `dst` (batch 1), plus float16 and int8 (float I/O, calibrated on
    `calibration`, model-input values in NCHW) when their paths are given; inputs stay NCHW by default."""
    check_onnx2tf_arguments(int8_dst=int8_dst, calibration=calibration)
    src = Path(src)
    python = str(python or os.environ.get("EDGEKD_ONNX2TF_PYTHON") or sys.executable)
    name = _input_name(src)
    wanted = {"fp32": dst, "fp16": fp16_dst, "int8": int8_dst}
    with tempfile.TemporaryDirectory(prefix="edgekd-onnx2tf-") as tmp:
        model = Path(tmp) / "model.onnx"
        shutil.copyfile(src, model)  # onnx2tf rewrites the file it converts
        kwargs = dict(
            input_onnx_file_path=str(model),
            output_folder_path=str(Path(tmp) / "out"),
            batch_size=1,
            non_verbose=True,
            not_use_onnxsim=True,  # onnxsim is not part of the pinned set; simplify_onnx does that job
            copy_onnx_input_output_names_to_tflite=True,
            keep_ncw_or_nchw_or_ncdhw_input_names=[name] if keep_nchw else None,
            output_integer_quantized_tflite=int8_dst is not None,
        )
        if int8_dst is not None:
            data = calibration.astype(np.float32)
            np.save(Path(tmp) / "calib.npy", data if keep_nchw else data.transpose(0, 2, 3, 1))
            # Our calibration data is model input already: mean 0, std 1 leaves it as it is.
            kwargs["custom_input_op_name_np_data_path"] = [[name, str(Path(tmp) / "calib.npy"), 0.0, 1.0]]
        version = _run(python, kwargs, src, timeout_s)
        for precision, path in wanted.items():
            if path is None:
                continue
            written = Path(tmp) / "out" / f"model_{_SUFFIXES[precision]}.tflite"
            if not written.is_file():  # onnx2tf logs some failures and still exits 0
                raise ExportError(f"{path}: onnx2tf exited 0 but wrote no {written.name}")
            with atomic_path(path) as part:
                shutil.copyfile(written, part)
    return Onnx2TfRun(
        version=version,
        layout="NCHW" if keep_nchw else "NHWC",
        files={p: str(v) for p, v in wanted.items() if v is not None},
        calibration_samples=None if calibration is None else len(calibration),
    )
