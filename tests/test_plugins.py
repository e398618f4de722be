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
import pytest

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


# --- a data kind, a distillation method and a target kind, each one module plus one entry point ----------

DATA_KIND = '''
"""A data kind from outside edgekd: `pixel_csv`, one CSV file per split, each row a label then side*side
gray pixels; `side` is a field of its own."""
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict, Field

from benchmarks.preprocess import image_steps
from toolkit.data.datasets import splits_from_arrays
from toolkit.data.kinds import DataKind, register_data_kind
from toolkit.errors import DataError


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    side: int = Field(ge=4)


def read(data, seed):
    side, parts = data.options.side, {}
    for split in ("train", "val", "test"):
        path = Path(data.root) / f"{split}.csv"
        rows = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
        if rows.shape[1] != 1 + side * side:
            raise DataError(f"{path}: {rows.shape[1] - 1} pixels per row, expected {side * side}")
        parts[split] = (rows[:, 1:].astype(np.uint8).reshape(-1, 1, side, side), rows[:, 0])
    steps = image_steps(mode="L", resize=[side, side])
    stats = dict(mean=data.mean, std=data.std)
    return splits_from_arrays(parts, labels=data.labels, steps=steps, where=data.root, **stats)


register_data_kind(DataKind("pixel_csv", read, options=Options))
'''

METHOD = '''
"""A distillation method from outside edgekd: logit matching (Ba & Caruana 2014), weight * MSE(student
logits, teacher logits), with `weight` in its own `distill.mse_logits` block."""
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from toolkit.distill.losses import LossTerm
from toolkit.extensions import DistillMethod, register_method


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weight: float = Field(1.0, ge=0)


def term(options, settings, **_):
    return LossTerm(lambda step: options.weight * F.mse_loss(step.logits, step.teacher))


register_method(DistillMethod("mse_logits", term, options=Options))
'''

TARGET_KIND = '''
"""A target kind from outside edgekd: `subproc://NAME`, a board reached by starting a child process here,
as an adb or serial driver would start `adb shell`."""
import subprocess
import sys
import tempfile
import time

from benchmarks.records import append_record
from toolkit.fleet import TargetKind, register_target_kind
from toolkit.fleet.targets import BoardRun, board_record


def run(boards, path, results, *, args, **_):
    done = []
    for board in boards:
        t0, outcome = time.monotonic(), BoardRun(board)
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "toolkit.cli.main", "bench", str(path), "--stream", *args(board)]
            proc = subprocess.run([*cmd, "--results", f"{tmp}/r.jsonl"], capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                append_record(results, board_record(line, board))
                outcome.records += 1
        if proc.returncode != 0:
            outcome.error = f"{board.name}: " + (proc.stderr.strip().splitlines() or ["failed"])[-1]
        outcome.seconds = time.monotonic() - t0
        done.append(outcome)
    return done


register_target_kind(TargetKind("subproc", run))
'''


@pytest.fixture
def plugin_env(tmp_path):
    """An installed distribution with the three modules, each named once in its entry-point group."""
    site = tmp_path / "site"
    meta = site / "edgekd_extras-0.1.dist-info"
    meta.mkdir(parents=True)
    for module, text in [
        ("edgekd_pixel_csv", DATA_KIND),
        ("edgekd_mse", METHOD),
        ("edgekd_subproc", TARGET_KIND),
    ]:
        (site / f"{module}.py").write_text(textwrap.dedent(text))
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: edgekd-extras\nVersion: 0.1\n")
    (meta / "entry_points.txt").write_text(
        "[edgekd.data_kinds]\npixel_csv = edgekd_pixel_csv\n\n"
        "[edgekd.distill_methods]\nmse_logits = edgekd_mse\n\n"
        "[edgekd.targets]\nsubproc = edgekd_subproc\n"
    )
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))


def _edgekd(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "toolkit.cli.main", *map(str, args)], capture_output=True, text=True, env=env,
        timeout=600,
    )  # fmt: skip


def _pixel_csvs(folder, side=16, per_class=(80, 20, 20)):
    """Three classes of noisy 16x16 templates, written as pixel_csv files."""
    rng = np.random.default_rng(0)
    templates = rng.uniform(0, 255, size=(3, side * side))
    folder.mkdir()
    for split, n in zip(("train", "val", "test"), per_class, strict=True):
        y = np.repeat(np.arange(3), n)
        x = np.clip(templates[y] + rng.normal(0, 60, size=(len(y), side * side)), 0, 255).astype(int)
        np.savetxt(folder / f"{split}.csv", np.c_[y, x], fmt="%d", delimiter=",")
    return folder


def _plugin_config(path, data, weight):
    path.write_text(
        textwrap.dedent(f"""
        data: {{kind: pixel_csv, root: {data}, side: 16}}
        teacher: {{arch: cnn_teacher, epochs: 2, batch_size: 32, lr: 0.003}}
        student: {{arch: cnn_student, epochs: 1, batch_size: 32, lr: 0.005}}
        distill: {{methods: [kd, mse_logits], mse_logits: {{weight: {weight}}}, scratch_control: false}}
        """)
    )
    return path


@pytest.mark.slow
def test_a_data_kind_and_a_distillation_method_from_outside_the_package_train_a_student(tmp_path, plugin_env):
    pytest.importorskip("torch")
    import torch

    data = _pixel_csvs(tmp_path / "pixels")
    runs = {}
    for weight in (0.0, 50.0):
        cfg = _plugin_config(tmp_path / f"w{weight:g}.yaml", data, weight)
        r = _edgekd(plugin_env, "distill", cfg, "--out", tmp_path / f"run{weight:g}")
        assert r.returncode == 0, r.stderr
        runs[weight] = tmp_path / f"run{weight:g}"
    summary = json.loads((runs[0.0] / "distill" / "summary.json").read_text())
    assert summary["student_kd"]["methods"] == ["kd", "mse_logits"]
    assert summary["teacher"]["test_accuracy"] > 0.8  # the CSV rows reached training: chance is 1/3
    weights = {
        w: torch.load(run / "distill" / "student_kd.pt", weights_only=False)["state_dict"]
        for w, run in runs.items()
    }
    teachers = [
        torch.load(run / "distill" / "teacher.pt", weights_only=False)["state_dict"] for run in runs.values()
    ]
    assert all(torch.equal(v, teachers[1][k]) for k, v in teachers[0].items())  # the same teacher twice
    changed = [k for k, v in weights[0.0].items() if not torch.equal(v, weights[50.0][k])]
    assert changed  # the method's own option changed the student


@pytest.mark.parametrize(
    "yaml_text,expected",
    [
        (
            "distill: {methods: [mse_logits], mse_logits: {weight: -1}}",
            "mse_logits.weight: Input should be greater",
        ),
        (
            "data: {kind: pixel_csv, root: /tmp, side: 2}",
            "kind pixel_csv: side: Input should be greater than or equal to 4",
        ),
        ("data: {kind: idx, side: 16}", "unknown key 'side': not a field of data nor of kind idx"),
    ],
)
def test_a_plugins_own_options_are_checked_before_anything_runs(tmp_path, plugin_env, yaml_text, expected):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text)
    r = _edgekd(plugin_env, "distill", cfg, "--out", tmp_path / "run")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert expected in r.stderr and str(cfg) in r.stderr
    assert not (tmp_path / "run").exists()


def test_a_target_kind_from_outside_the_package_measures_on_its_board(tmp_path, plugin_env):
    from tests.conftest import onnx_classifier

    model = onnx_classifier(tmp_path / "probe.onnx", np.ones((64, 3), np.float32), side=8)
    results = tmp_path / "results.jsonl"
    args = [
        "bench",
        model,
        "--target",
        "subproc://lab-pi",
        "--results",
        results,
        "--min-runs",
        "10",
        "--min-time",
        "0",
    ]
    r = _edgekd(plugin_env, *args, "--repeats", "1")
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(records) == 1 and records[0]["model"] == "probe" and records[0]["latency"]["count"] >= 10
    target = records[0]["target"]
    assert target["name"] == "lab-pi" and target["label"].startswith("lab-pi: native")
    assert "lab-pi" in r.stderr
