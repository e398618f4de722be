"""Extension points take third parties' modules: a backend from outside the package, found by entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

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
    from toolkit.extensions import DISTILL_METHODS
    from toolkit.fleet import TARGET_KINDS
    from toolkit.models.teacher_kinds import LOADERS

    return [BACKENDS, EXPORTERS, DATA_KINDS, DISTILL_METHODS, TARGET_KINDS, LOADERS]


def test_edgekd_lists_only_its_backends_as_entry_points_and_registers_its_own_names_once():
    """Built-ins register where they are written; the metadata names only the backends `benchmarks`
    cannot import (they live in `export`)."""
    from importlib.metadata import entry_points

    groups = {r.group: r for r in _registries()}
    declared = {g: sorted(e.name for e in entry_points(group=g)) for g in groups}
    assert declared == {g: ["executorch", "torch"] if g == "edgekd.backends" else [] for g in groups}
    names = {g: r.names() for g, r in groups.items()}
    assert names["edgekd.exporters"] == ["onnx", "pte", "tflite", "torch"]
    assert names["edgekd.distill_methods"] == ["dkd", "hint", "kd"]
    assert {"idx", "image_folder", "text_csv"} <= set(names["edgekd.data_kinds"])
    assert names["edgekd.targets"] == ["ssh"]
