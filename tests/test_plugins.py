"""Extension points take third parties' modules: a backend from outside the package, found by entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

# A complete backend for a made-up format: a linear classifier stored as an .npz under the suffix `.lin`.
STAND_IN = '''
"""A stand-in backend: `.lin` files hold a linear classifier (w, b) as an .npz."""
import numpy as np

from benchmarks.backends import Backend, register_backend

register_backend(Backend("linear", {"lin": ".lin"}, requires="numpy", distribution="numpy", module=__name__))


def load(path, *, threads):
    with open(path, "rb") as f:
        arrays = np.load(f)
        return {"w": arrays["w"], "b": arrays["b"], "path": str(path)}


def describe(handle):
    return {"kind": "stand-in", "inputs": int(handle["w"].shape[0])}


def input_spec(handle):
    return "x", [None, int(handle["w"].shape[0])], np.dtype(np.float32)


def prepare(handle, x):
    return np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float32)


def invoke(handle, x):
    return x @ handle["w"] + handle["b"]


def run(handle, x):
    return invoke(handle, prepare(handle, x))


def version():
    return "0.1"
'''


def _plugin(tmp_path):
    """The stand-in module and an installed distribution's metadata naming it in `edgekd.backends`."""
    site = tmp_path / "site"
    (site / "edgekd_linear-0.1.dist-info").mkdir(parents=True)
    (site / "edgekd_linear.py").write_text(textwrap.dedent(STAND_IN))
    meta = site / "edgekd_linear-0.1.dist-info"
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: edgekd-linear\nVersion: 0.1\n")
    (meta / "entry_points.txt").write_text("[edgekd.backends]\nlinear = edgekd_linear\n")
    return site


def test_a_backend_from_outside_the_package_measures_a_file_end_to_end(tmp_path):
    site = _plugin(tmp_path)
    model = tmp_path / "probe.lin"
    w = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    with open(model, "wb") as f:
        np.savez(f, w=w, b=np.zeros(3, np.float32))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    results = tmp_path / "results.jsonl"
    args = ["bench", str(model), "--results", str(results), "--min-runs", "20", "--min-time", "0"]
    r = subprocess.run(
        [sys.executable, "-m", "toolkit.cli.main", *args, "--repeats", "2"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["round"] for r in records] == [0, 1]  # one record per round
    for record in records:
        assert (record["backend"], record["format"], record["model"]) == ("linear", "lin", "probe")
        assert record["backend_info"]["kind"] == "stand-in" and record["runtime_version"] == "0.1"
        assert record["latency"]["count"] >= 20 and record["latency"]["p50"] > 0
    assert "│ probe │ lin    │" in r.stderr  # the table lists it like any other file


# A complete exporter for a made-up format, with the backend that runs its files: `.ortx` files are ONNX files
# under a format name of their own, written for fp32 only and run by onnxruntime. One module, one entry point
# in each group: nothing in edgekd changes for it.
EXPORTER = '''
"""A stand-in exporter: `.ortx` files are the model's fp32 ONNX graph, run by onnxruntime."""
import shutil

from benchmarks.backends import Backend, register_backend
from benchmarks.backends.onnxruntime import describe, input_spec, invoke, load, prepare, run, version
from export.exporters import Exporter, register_exporter

register_backend(
    Backend("ortcopy", {"ortx": ".ortx"}, requires="onnxruntime", distribution="onnxruntime", module=__name__)
)


def write(job):
    from export.onnx import export_onnx

    src = job.work / f"{job.name}.ortx-source.onnx"
    export_onnx(job.model, job.sample, src, opset=job.settings.opset, exporter=job.settings.onnx_exporter)
    shutil.copyfile(src, job.dst)
    return None  # a plain float file: nothing beyond the format to record


register_exporter(Exporter("ortx", ("fp32",), write))
'''


def _exporter_plugin(tmp_path):
    """The stand-in exporter module, named in `edgekd.exporters` and (for its backend) `edgekd.backends`."""
    site = tmp_path / "site"
    meta = site / "edgekd_ortx-0.1.dist-info"
    meta.mkdir(parents=True)
    (site / "edgekd_ortx.py").write_text(textwrap.dedent(EXPORTER))
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: edgekd-ortx\nVersion: 0.1\n")
    groups = "[edgekd.backends]\nortcopy = edgekd_ortx\n\n[edgekd.exporters]\nortx = edgekd_ortx\n"
    (meta / "entry_points.txt").write_text(groups)
    return site


def test_an_exporter_from_outside_the_package_ships_a_file_end_to_end(tmp_path):
    """`edgekd export --model` with `ortx` among the formats: the plugin's file is written, checked against
    torch and listed in the manifest, fp32 only (the one precision it offers), beside edgekd's own files."""
    import yaml

    pytest.importorskip("torch")
    pytest.importorskip("PIL")
    from tests.image_data import write_image_folder, write_user_zoo

    site = _exporter_plugin(tmp_path)
    zoo = write_user_zoo(tmp_path / "zoo")
    write_image_folder(tmp_path / "imgs", {"cat": 8, "dog": 8, "fox": 8})  # tiny_net: 3 classes
    data = {"kind": "image_folder", "root": str(tmp_path / "imgs"), "resize": [24, 24]}
    export = {"formats": ["onnx", "ortx"], "teacher_precisions": ["fp32", "fp16"], "calibration_samples": 8}
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"data": {**data, "cache_dir": str(tmp_path / "c")},
                                                        "export": export}))  # fmt: skip
    path = os.pathsep.join([str(site), str(zoo), os.environ.get("PYTHONPATH", "")])
    out = tmp_path / "own"
    args = ["export", "--model", "userzoo:tiny_net", "--data", str(tmp_path / "data.yaml"), "--out", str(out)]
    r = subprocess.run(
        [sys.executable, "-m", "toolkit.cli.main", *args],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=path), timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    # raw JSON: this process has no `ortx` backend, so the typed reader would refuse the format (it was
    # validated when written, in the process that had the plugin)
    entries = {m["file"]: m for m in json.loads((out / "bundle" / "manifest.json").read_text())["models"]}
    assert set(entries) == {"teacher.onnx", "teacher_fp16.onnx", "teacher.ortx"}  # no fp16 .ortx: not offered
    ortx = entries["teacher.ortx"]
    assert (ortx["format"], ortx["precision"], ortx["layout"], ortx["batch"]) == (
        "ortx",
        "fp32",
        "NCHW",
        None,
    )
    assert (
        ortx["parity"]["passed"] and ortx["parity"]["backend"] == "ortcopy" and ortx["quantization"] is None
    )
    assert "exported teacher.ortx" in r.stderr


def test_no_stage_asks_for_a_format_by_name():
    """What differs between formats is what the exporter declares (`Exporter` fields); the stages that write
    bundles never compare a format with one of the registered names."""
    import re
    from pathlib import Path

    from export.exporters import EXPORTERS

    root = Path(__file__).resolve().parents[1]
    stages = [
        root / "toolkit/pipeline/export_stage.py",
        root / "export/from_onnx.py",
        root / "export/bundle.py",
    ]
    names = "|".join(map(re.escape, EXPORTERS.names()))
    pattern = re.compile(rf"""[=!]=\s*["']({names})["']""")
    for path in stages:
        assert not pattern.findall(path.read_text()), path


def test_without_the_plugin_the_suffix_is_refused(tmp_path):
    model = tmp_path / "probe.lin"
    model.write_bytes(b"x")
    r = subprocess.run(
        [sys.executable, "-m", "toolkit.cli.main", "bench", str(model)], capture_output=True, text=True
    )
    assert r.returncode == 1
    expected = f"error: {model}: cannot benchmark a .lin file; expected .onnx, .pte, .tflite or .pt2"
    assert r.stderr.strip() == expected


def _registries():
    from benchmarks.backends import BACKENDS
    from export.exporters import EXPORTERS
    from toolkit.data.kinds import DATA_KINDS
    from toolkit.distill.losses import TERMS
    from toolkit.fleet import TARGET_KINDS
    from toolkit.models.teacher_kinds import LOADERS

    return [BACKENDS, EXPORTERS, DATA_KINDS, TERMS, TARGET_KINDS, LOADERS]


def test_every_entry_point_edgekd_declares_is_registered_under_its_name():
    from importlib.metadata import entry_points

    groups = {r.group: r for r in _registries()}
    declared = {g: sorted(e.name for e in entry_points(group=g)) for g in groups}
    assert declared["edgekd.exporters"] == ["onnx", "pte", "tflite", "torch"]
    assert "torch" in declared["edgekd.backends"]
    for group, registry in groups.items():
        assert set(declared[group]) <= set(registry.names()), group
    assert {"idx", "image_folder", "text_csv"} <= set(groups["edgekd.data_kinds"].names())
    assert groups["edgekd.targets"].names() == ["ssh"]
