"""Bad-input corpus: every entry point answers broken input with one line naming the file and the fault,
exit code 1, no traceback, and nothing half-written left behind (issue #19).

Each case builds its own bad input in tmp_path and runs the real CLI in-process through `main()`.
Run alone with `python scripts/bad_input_corpus.py`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import edgekd_main, manifest_dict, onnx_classifier, write_idx, write_manifest_for
from tests.test_benchmarks import _record

FAST = ["--min-runs", "2", "--min-time", "0", "--repeats", "1"]
WEIGHT = np.eye(16, 3, dtype=np.float32)  # onnx_classifier on 1x4x4 inputs, 3 classes


def _files(root: Path) -> set[Path]:
    """Every file under `root` (none when it does not exist)."""
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def _error_line(monkeypatch, capsys, *args) -> str:
    """Run `edgekd ARGS`; assert exit 1, one `error:` line and no traceback; return the message."""
    code, err = edgekd_main(monkeypatch, capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1, err
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0].removeprefix("error: ")


def _assert_message(message: str, expected: str) -> None:
    """`expected` is the exact message, or a regex when it starts with `re:`."""
    if expected.startswith("re:"):
        assert re.fullmatch(expected[3:], message, flags=re.S), message
    else:
        assert message == expected


# --- config files ---------------------------------------------------------------------------------------

CONFIGS = [
    ("unknown-top-key", "epochz: 3\n", "epochz: Extra inputs are not permitted"),
    (
        "unknown-nested-key",
        "distill: {temprature: 2}\n",
        "re:distill: Value error, unknown key 'temprature': not a field of distill nor a method with .*",
    ),
    (
        "wrong-type-int",
        "student: {arch: cnn_student, epochs: many}\n",
        "student.epochs: Input should be a valid integer, unable to parse string as an integer",
    ),
    ("wrong-type-list", "export: {formats: onnx}\n", "export.formats: Input should be a valid list"),
    (
        "wrong-type-section",
        "distill: 4\n",
        "distill: Input should be a valid dictionary or instance of DistillConfig",
    ),
    (
        "temperature-zero",
        "distill: {temperature: 0}\n",
        "distill.temperature: Input should be greater than 0",
    ),
    (
        "temperature-negative",
        "distill: {temperature: -1.5}\n",
        "distill.temperature: Input should be greater than 0",
    ),
    ("alpha-above-1", "distill: {alpha: 1.5}\n", "distill.alpha: Input should be less than or equal to 1"),
    (
        "alpha-below-0",
        "distill: {alpha: -0.1}\n",
        "distill.alpha: Input should be greater than or equal to 0",
    ),
    (
        "batch-size-zero",
        "student: {arch: cnn_student, batch_size: 0}\n",
        "student.batch_size: Input should be greater than or equal to 1",
    ),
    (
        "epochs-negative",
        "teacher: {arch: cnn_teacher, epochs: -2}\n",
        "teacher.epochs: Input should be greater than or equal to 1",
    ),
    ("no-methods", "distill: {methods: []}\n", "re:distill\\.methods: List should have at least 1 item.*"),
    (
        "unknown-method",
        "distill: {methods: [kd, magic]}\n",
        "re:distill\\.methods\\.1: Value error, unknown distillation method 'magic'; known: dkd, hint, kd.*",
    ),
    (
        "teacher-and-teachers",
        "teacher: {arch: cnn_teacher}\nteachers: [{arch: cnn_teacher}]\n",
        "(top level): Value error, give teacher (one) or teachers (several), not both",
    ),
    ("top-level-list", "- a\n- b\n", "expected a mapping at the top level, got list"),
    ("key-with-line-break", '"two\\nlines": 1\n', "'two\\nlines': Extra inputs are not permitted"),
    (
        "invalid-yaml",
        "distill: [kd, hint\n",
        "invalid YAML (line 2, column 1: expected ',' or ']', but got '<stream end>')",
    ),
    (
        "tab-indent",
        "distill:\n\talpha: 0.5\n",
        "re:invalid YAML \\(line 2, column 1: found character '\\\\t' .*\\)",
    ),
    (
        "python-tag",
        "seed: !!python/object/apply:os.system ['touch pwned']\n",
        "re:invalid YAML \\(line 1, column 7: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object/apply:os.system'\\)",
    ),
]


@pytest.mark.parametrize("command", ["distill", "run", "train-teacher"])
@pytest.mark.parametrize("text, expected", [c[1:] for c in CONFIGS], ids=[c[0] for c in CONFIGS])
def test_bad_config_fails_before_anything_runs(monkeypatch, capsys, tmp_path, command, text, expected):
    monkeypatch.chdir(tmp_path)  # the python tag, were it executed, would write here
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    out = tmp_path / "run"
    message = _error_line(monkeypatch, capsys, command, cfg, "--out", out)
    _assert_message(message.removeprefix(f"{cfg}: "), expected)
    assert message.startswith(f"{cfg}: ")
    assert not out.exists() and not (tmp_path / "pwned").exists()  # failed before the run dir was made


def test_missing_config_file_is_a_usage_error(monkeypatch, capsys, tmp_path):
    cfg = tmp_path / "nope.yaml"
    message = _error_line(monkeypatch, capsys, "distill", cfg, "--out", tmp_path / "run")
    assert message == f"Invalid value for 'config': file '{cfg}' does not exist."
    assert not (tmp_path / "run").exists()


def test_bad_config_of_a_run_dir_stops_export(monkeypatch, capsys, tmp_path):
    run = tmp_path / "run"
    (run / "distill").mkdir(parents=True)
    (run / "config.yaml").write_text("export: {opset: 5}\n")
    message = _error_line(monkeypatch, capsys, "export", run)
    assert message == f"{run / 'config.yaml'}: export.opset: Input should be greater than or equal to 7"
    assert not (run / "bundle").exists()


def test_debug_shows_the_traceback(monkeypatch, tmp_path):
    """With --debug the error propagates (the traceback shows); without, it is the one line above."""
    from toolkit.cli.main import _state, main
    from toolkit.errors import ConfigError

    monkeypatch.setitem(_state, "debug", False)  # --debug sets it; restored for the tests after this one
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("distill: {alpha: 2}\n")
    monkeypatch.setattr("sys.argv", ["edgekd", "--debug", "distill", str(cfg), "--out", str(tmp_path / "r")])
    with pytest.raises(ConfigError, match=re.escape(f"{cfg}: distill.alpha")):
        main()
    assert not (tmp_path / "r").exists()


# --- model files given to `edgekd bench` ----------------------------------------------------------------


def _good_onnx(path: Path) -> Path:
    return onnx_classifier(path, WEIGHT, side=4)


def _external_outside(folder: Path) -> Path:
    """An ONNX file whose weights live in `../x.bin`, outside its folder."""
    import onnx

    folder.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(_good_onnx(folder / "src.onnx")))
    onnx.save(model, str(folder / "m.onnx"), save_as_external_data=True, location="w.bin", size_threshold=0)
    moved = onnx.load(str(folder / "m.onnx"), load_external_data=False)
    for tensor in moved.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../x.bin"
    (folder.parent / "x.bin").write_bytes((folder / "w.bin").read_bytes())
    onnx.save(moved, str(folder / "evil.onnx"))
    return folder / "evil.onnx"


def _make_model(kind: str, folder: Path) -> Path:
    """One broken model file of `kind` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    good = _good_onnx(folder / "good.src").read_bytes()
    (folder / "good.src").unlink()
    content = {
        "zero.onnx": b"",
        "zero.tflite": b"",
        "truncated.onnx": good[: len(good) // 2],
        "random.onnx": np.random.default_rng(0).bytes(512),
        "random.tflite": np.random.default_rng(1).bytes(512),
        "onnx-named.tflite": good,
    }
    if kind == "external-outside.onnx":
        return _external_outside(folder / "model")
    path = folder / kind
    path.write_bytes(content[kind])
    return path


NOT_FLATBUFFER = "The model is not a valid Flatbuffer buffer"
MODEL_FAULTS = {
    "zero.onnx": "INVALID_ARGUMENT: No graph was found in the protobuf.",
    "truncated.onnx": "INVALID_PROTOBUF: Protobuf parsing failed.",
    "random.onnx": "INVALID_PROTOBUF: Protobuf parsing failed.",
    "external-outside.onnx": "FAIL: External data path validation failed for initializer: weight. Error: "
    "External data path escapes model directory.*",
    "zero.tflite": "litert cannot build an interpreter \\(mmap of size 0 requested.*\\)",
    "random.tflite": f"litert cannot build an interpreter \\({NOT_FLATBUFFER}\\)",
    "onnx-named.tflite": f"litert cannot build an interpreter \\({NOT_FLATBUFFER}\\)",
}


def _model_fault(path: Path, kind: str) -> str:
    fault = MODEL_FAULTS[kind]
    if kind.endswith(".onnx"):
        fault = f"onnxruntime cannot load it \\({fault}\\)"
    where = re.escape(str(path))
    return f"{where}: benchmark worker exited with 1: {where}: {fault}"


@pytest.mark.parametrize("kind", list(MODEL_FAULTS))
def test_broken_model_file_is_one_line(monkeypatch, capsys, tmp_path, kind):
    path = _make_model(kind, tmp_path / "models")
    results = tmp_path / "out" / "r.jsonl"
    message = _error_line(monkeypatch, capsys, "bench", path, "--results", results, *FAST)
    assert re.fullmatch(_model_fault(path, kind), message), message
    assert _files(tmp_path / "out") == set()


def test_broken_model_file_is_one_line_with_default_rounds(monkeypatch, capsys, tmp_path):
    """Several rounds (the default): a file that cannot load is tried and reported once, not per round."""
    path = _make_model("random.onnx", tmp_path / "models")
    results = tmp_path / "out" / "r.jsonl"
    message = _error_line(monkeypatch, capsys, "bench", path, "--results", results, "--min-runs", "2")
    assert re.fullmatch(_model_fault(path, "random.onnx"), message), message


def _bundle(root: Path, **top) -> Path:
    """A one-model bundle (student_kd.onnx on 1x4x4 inputs) with its manifest."""
    root.mkdir(parents=True, exist_ok=True)
    _good_onnx(root / "student_kd.onnx")
    spec = {"name": "input", "shape": [None, 1, 4, 4], "dtype": "float32", "layout": "NCHW"}
    spec["preprocessing"] = {"scale": 1 / 255, "mean": [0.0], "std": [1.0]}
    models = [{"name": "student_kd", "file": "student_kd.onnx", "format": "onnx", "precision": "fp32"}]
    write_manifest_for(root, models, **{"input": spec, **top})
    return root


@pytest.mark.parametrize("kind", ["truncated.onnx", "random.onnx", "external-outside.onnx"])
def test_broken_model_in_a_bundle_is_one_line(monkeypatch, capsys, tmp_path, kind):
    bundle = tmp_path / "bundle"
    _bundle(bundle)
    bad = _make_model(kind, tmp_path / "made")
    (bundle / "student_kd.onnx").write_bytes(bad.read_bytes())
    if kind == "external-outside.onnx":  # its weights sit beside the bundle, not in it
        (bundle / "w.bin").write_bytes((bad.parent / "w.bin").read_bytes())
        (bundle.parent / "x.bin").write_bytes((bad.parent / "w.bin").read_bytes())
    # Checksums updated, so the file itself is what is wrong, not the manifest.
    models = [{"name": "student_kd", "file": "student_kd.onnx", "format": "onnx", "precision": "fp32"}]
    write_manifest_for(bundle, models, input=json.loads((bundle / "manifest.json").read_text())["input"])
    results = tmp_path / "out" / "r.jsonl"
    message = _error_line(monkeypatch, capsys, "bench", bundle, "--results", results, *FAST)
    assert re.fullmatch(_model_fault(bundle / "student_kd.onnx", kind), message), message
    assert _files(tmp_path / "out") == set()


@pytest.mark.parametrize(
    "shape, fault",
    [
        ([None, 1, 28, 28], "input shape [None, 1, 28, 28] sets dim 2 to 28, the model fixes 4"),
        ([None, 16], "input shape [None, 16] has 2 dims, input 'input' has 4 ([None, 1, 4, 4])"),
    ],
    ids=["other-size", "other-rank"],
)
def test_model_input_not_matching_the_manifest(monkeypatch, capsys, tmp_path, shape, fault):
    spec = {"name": "input", "shape": shape, "dtype": "float32", "layout": "NCHW"}
    spec["preprocessing"] = {"scale": 1 / 255, "mean": [0.0], "std": [1.0]}
    bundle = _bundle(tmp_path / "bundle", input=spec)
    results = tmp_path / "out" / "r.jsonl"
    message = _error_line(monkeypatch, capsys, "bench", bundle, "--results", results, *FAST)
    model = bundle / "student_kd.onnx"
    assert message == f"{model}: benchmark worker exited with 1: {model}: {fault}"
    assert _files(tmp_path / "out") == set()


def _all_dynamic_onnx(path: Path) -> Path:
    """Relu over an input whose every dimension is symbolic."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["output"])],
        "dyn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", "C", "H", "W"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", "C", "H", "W"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_every_dim_dynamic_runs_at_1_with_a_note_per_dim(monkeypatch, capsys, tmp_path):
    """Decided behaviour: not an error. Each dynamic dim is set to 1 (dim 0: the batch), the output and the
    record say so, and --shape sets them."""
    from benchmarks.records import read_records

    model = _all_dynamic_onnx(tmp_path / "dyn.onnx")
    results = tmp_path / "r.jsonl"
    code, err = edgekd_main(monkeypatch, capsys, "bench", model, "--results", results, *FAST)
    assert code == 0 and "Traceback" not in err, err
    (rec,) = read_records(results)
    assert rec.input_shape == [1, 1, 1, 1]
    assert rec.notes == [
        "input 'input' dim 0 is dynamic: set to the batch size 1 (--shape sets it)",
        *(f"input 'input' dim {i} is dynamic: defaulted to 1 (--shape sets it)" for i in (1, 2, 3)),
    ]
    code, err = edgekd_main(
        monkeypatch, capsys, "bench", model, "--results", results, "--shape", "2,3,8,8", *FAST
    )
    assert code == 0, err
    assert read_records(results)[-1].input_shape == [2, 3, 8, 8]


# --- bundles --------------------------------------------------------------------------------------------


def _rewrite_manifest(bundle: Path, edit) -> Path:
    """Apply `edit(dict)` to the bundle's manifest.json (bypassing validation, as a hand edit would)."""
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


def _set(data: dict, dotted: str, value) -> None:
    *head, last = dotted.split(".")
    for key in head:
        data = data[int(key)] if isinstance(data, list) else data[key]
    data[last] = value


MANIFEST_FAULTS = [
    (
        "unknown-version",
        lambda d: _set(d, "manifest_version", 2),
        "manifest_version 2 is not one this edgekd reads (1); use the edgekd that wrote the bundle",
    ),
    (
        "unknown-top-key",
        lambda d: _set(d, "colour", "red"),
        "colour: Extra inputs are not permitted (got 'red')",
    ),
    (
        "unknown-entry-key",
        lambda d: _set(d, "models.0.sha1", "x"),
        "models.0.sha1: Extra inputs are not permitted (got 'x')",
    ),
    (
        "bad-checksum-format",
        lambda d: _set(d, "models.0.sha256", "XYZ"),
        "models.0.sha256: String should match pattern '^[0-9a-f]{64}$' (got 'XYZ')",
    ),
    (
        "missing-field",
        lambda d: d["models"][0].pop("file"),
        "models.0.file: Field required",
    ),
    (
        "negative-dim",
        lambda d: _set(d, "input.shape", [None, 1, -4, 4]),
        "input.shape.2: Input should be greater than or equal to 1 (got -4)",
    ),
]


@pytest.mark.parametrize("edit, fault", [c[1:] for c in MANIFEST_FAULTS], ids=[c[0] for c in MANIFEST_FAULTS])
def test_bad_manifest_is_one_line(monkeypatch, capsys, tmp_path, edit, fault):
    bundle = _bundle(tmp_path / "bundle")
    manifest = _rewrite_manifest(bundle, edit)
    results = tmp_path / "out" / "r.jsonl"
    assert _error_line(monkeypatch, capsys, "bench", bundle, "--results", results) == f"{manifest}: {fault}"
    assert _files(tmp_path / "out") == set()


@pytest.mark.parametrize(
    "content, fault",
    [
        (
            b'{"manifest_version": 1, ',
            "re:invalid JSON \\(Expecting property name enclosed in double quotes.*\\)",
        ),
        (b"\xff\xfe not text", "re:invalid JSON \\('utf-8' codec can't decode byte 0xff.*\\)"),
        (b"[1, 2]", "(top level): Input should be a valid dictionary or instance of Manifest (got [1, 2])"),
    ],
    ids=["not-json", "not-utf8", "json-list"],
)
def test_manifest_that_is_not_a_manifest(monkeypatch, capsys, tmp_path, content, fault):
    bundle = _bundle(tmp_path / "bundle")
    (bundle / "manifest.json").write_bytes(content)
    results = tmp_path / "out" / "r.jsonl"
    message = _error_line(monkeypatch, capsys, "bench", bundle, "--results", results)
    _assert_message(message.removeprefix(f"{bundle / 'manifest.json'}: "), fault)
    assert message.startswith(f"{bundle / 'manifest.json'}: ")
    assert _files(tmp_path / "out") == set()


def test_file_named_by_the_manifest_is_missing(monkeypatch, capsys, tmp_path):
    bundle = _bundle(tmp_path / "bundle")
    (bundle / "student_kd.onnx").unlink()
    results = tmp_path / "out" / "r.jsonl"
    message = _error_line(monkeypatch, capsys, "bench", bundle, "--results", results, *FAST)
    assert message == f"{bundle / 'student_kd.onnx'}: model file not found"
    assert _files(tmp_path / "out") == set()


def test_checksum_mismatch_is_refused(monkeypatch, capsys, tmp_path):
    bundle = _bundle(tmp_path / "bundle")
    onnx_classifier(bundle / "student_kd.onnx", 2 * WEIGHT, side=4)  # same size, other weights
    results = tmp_path / "out" / "r.jsonl"
    message = _error_line(monkeypatch, capsys, "bench", bundle, "--results", results, *FAST)
    assert re.fullmatch(
        rf"{re.escape(str(bundle / 'student_kd.onnx'))}: sha256 [0-9a-f]{{12}}… does not match the "
        rf"manifest's [0-9a-f]{{12}}… \(changed since export\?\)",
        message,
    ), message
    assert _files(tmp_path / "out") == set()


def _outside_link(bundle: Path) -> Path:
    """Replace the bundle's model by a symlink to a model outside the bundle."""
    outside = _good_onnx(bundle.parent / "elsewhere.onnx")
    (bundle / "student_kd.onnx").unlink()
    (bundle / "student_kd.onnx").symlink_to(outside)
    return outside


def _outside_path(bundle: Path) -> Path:
    """Point the manifest's entry at `../elsewhere.onnx`."""
    outside = _good_onnx(bundle.parent / "elsewhere.onnx")
    models = [{"name": "student_kd", "file": "../elsewhere.onnx", "format": "onnx", "precision": "fp32"}]
    write_manifest_for(bundle, models, input=json.loads((bundle / "manifest.json").read_text())["input"])
    return outside


@pytest.mark.parametrize("make", [_outside_link, _outside_path], ids=["symlink", "dotdot-path"])
def test_model_outside_the_bundle_is_refused(monkeypatch, capsys, tmp_path, make):
    bundle = _bundle(tmp_path / "bundle")
    outside = make(bundle)
    results = tmp_path / "out" / "r.jsonl"
    message = _error_line(monkeypatch, capsys, "bench", bundle, "--results", results, *FAST)
    named = bundle / json.loads((bundle / "manifest.json").read_text())["models"][0]["file"]
    assert message == f"{named}: resolves to {outside}, outside the bundle {bundle}; refusing to read it"
    assert _files(tmp_path / "out") == set()


def test_check_files_names_the_fault(tmp_path):
    """`check_files` on its own: what `find_models` raises for a received bundle."""
    from benchmarks.manifest import check_files, read_manifest

    bundle = _bundle(tmp_path / "bundle")
    check_files(read_manifest(bundle), bundle)  # a whole bundle passes
    onnx_classifier(bundle / "student_kd.onnx", 2 * WEIGHT, side=4)
    with pytest.raises(ValueError, match=r"student_kd\.onnx: sha256 [0-9a-f]{12}… does not match"):
        check_files(read_manifest(bundle), bundle)
    outside = _outside_link(bundle)
    with pytest.raises(ValueError, match=re.escape(f"resolves to {outside}, outside the bundle {bundle}")):
        check_files(read_manifest(bundle), bundle)
    (bundle / "student_kd.onnx").unlink()
    with pytest.raises(ValueError, match=re.escape(f"{bundle / 'student_kd.onnx'}: model file not found")):
        check_files(read_manifest(bundle), bundle)


def test_float_test_data_in_a_bundle_is_refused(monkeypatch, capsys, tmp_path):
    """Bundle test data is uint8 images; float data (which could carry NaN) is refused, not measured."""
    from export._files import sha256_file

    root = tmp_path / "bundle"
    root.mkdir()
    data = root / "test.npz"
    np.savez(data, x=np.full((4, 1, 4, 4), np.nan, np.float32), y=np.zeros(4, np.int64))
    test_data = {"file": "test.npz", "n": 4, "sha256": sha256_file(data)}
    _bundle(root, test_data=test_data)
    results = tmp_path / "out" / "r.jsonl"
    message = _error_line(monkeypatch, capsys, "bench", root, "--results", results, *FAST)
    model = root / "student_kd.onnx"
    assert message == (
        f"{model}: benchmark worker exited with 1: {data}: expected uint8 x (N, C, H, W) and "
        "y (N,), got x float32 (4, 1, 4, 4), y (4,)"
    )
    assert _files(tmp_path / "out") == set()


# --- checkpoints ----------------------------------------------------------------------------------------


class _Evil:
    """Unpickling this runs a shell command: what weights-only loading exists to refuse."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _checkpoint(kind: str, path: Path, marker: Path) -> str:
    """Write a bad teacher file of `kind` to `path`; return the expected fault after `path: `."""
    import torch

    from toolkit.models import ModelSpec, create_model

    if kind == "other-arch":
        torch.save(create_model(ModelSpec(arch="cnn_student", input_shape=(1, 8, 8))).state_dict(), path)
        return (
            "re:weights do not fit cnn_teacher: 2 missing: head\\.3\\.weight, head\\.3\\.bias; 17 shape "
            "mismatches: features\\.0\\.0\\.weight \\(16, 1, 3, 3\\) in file vs \\(64, 1, 3, 3\\) in model, "
            ".*"
        )
    if kind == "pickled-object":
        torch.save({"args": argparse.Namespace(lr=1)}, path)
        return (
            "holds a pickled argparse.Namespace, which a weights-only load refuses; "
            "save its state_dict, TorchScript or a torch.export .pt2 instead"
        )
    if kind == "malicious-zip":
        torch.save(_Evil(marker), path)
        return "re:holds a pickled (posix|os)\\.system, which a weights-only load refuses; .*"
    if kind == "malicious-legacy-pickle":
        path.write_bytes(pickle.dumps(_Evil(marker), protocol=2))
        return "re:holds a pickled (posix|os)\\.system, which a weights-only load refuses; .*"
    if kind == "random-bytes":
        path.write_bytes(np.random.default_rng(0).bytes(256))
        return "not a torch file (neither a zip archive nor a pickle)"
    if kind == "empty":
        path.write_bytes(b"")
        return "not a torch file (neither a zip archive nor a pickle)"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    ["other-arch", "pickled-object", "malicious-zip", "malicious-legacy-pickle", "random-bytes", "empty"],
)
def test_bad_teacher_checkpoint_is_refused(monkeypatch, capsys, tmp_path, idx_folder, kind):
    pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    weights = tmp_path / "teacher.pt"
    fault = _checkpoint(kind, weights, marker)
    source = (
        f"{{path: {weights}}}"
        if kind != "other-arch"
        else f"{{kind: state_dict, arch: cnn_teacher, path: {weights}}}"
    )
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        f"device: cpu\ndata: {{root: {idx_folder}, val_size: 10}}\nteacher: {{source: {source}}}\n"
    )
    run = tmp_path / "run"
    message = _error_line(monkeypatch, capsys, "distill", cfg, "--out", run)
    assert message.startswith(f"{weights}: "), message
    _assert_message(message.removeprefix(f"{weights}: "), fault)
    assert not marker.exists()  # nothing in the file ran
    assert not list(run.rglob("*.pt")) and not list(run.rglob("*partial*"))


def _bad_run_checkpoint(kind: str, path: Path) -> str:
    """Write a broken `distill/teacher.pt`; the expected fault."""
    import torch

    if kind == "truncated-pickle":
        path.write_bytes(b"\x80\x02 truncated pickle")
        return "not a readable torch file: Unsupported operand 32"
    if kind == "plain-state-dict":
        torch.save({"w": torch.zeros(2)}, path)
        return "not an edgekd checkpoint (expected its spec and info keys)"
    torch.save({"spec": {}, "info": {}, "cfg": argparse.Namespace(a=1)}, path)
    return (
        "holds a pickled argparse.Namespace, which a weights-only load refuses; "
        "save its state_dict, TorchScript or a torch.export .pt2 instead"
    )


@pytest.mark.parametrize("kind", ["truncated-pickle", "plain-state-dict", "pickled-object"])
def test_bad_run_checkpoint_stops_export_in_one_line(monkeypatch, capsys, tmp_path, idx_folder, kind):
    pytest.importorskip("torch")
    run = tmp_path / "run"
    (run / "distill").mkdir(parents=True)
    (run / "config.yaml").write_text(f"device: cpu\ndata: {{root: {idx_folder}, val_size: 10}}\n")
    ckpt = run / "distill" / "teacher.pt"
    fault = _bad_run_checkpoint(kind, ckpt)
    assert _error_line(monkeypatch, capsys, "export", run) == f"{ckpt}: {fault}"
    assert _files(run / "bundle") == set()  # the stage made its folder, but wrote nothing into it


def _distill_config(tmp_path: Path, idx_folder: Path) -> Path:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"device: cpu\ndata: {{root: {idx_folder}, val_size: 10}}\n")
    return cfg


def test_corrupt_saved_teacher_stops_a_rerun(monkeypatch, capsys, tmp_path, idx_folder):
    """A second `edgekd distill` checks whether the saved teacher is reusable: it loads it weights-only."""
    pytest.importorskip("torch")
    run = tmp_path / "run"
    (run / "distill").mkdir(parents=True)
    ckpt = run / "distill" / "teacher.pt"
    _checkpoint("malicious-zip", ckpt, tmp_path / "pwned")
    message = _error_line(monkeypatch, capsys, "distill", _distill_config(tmp_path, idx_folder), "--out", run)
    assert message.startswith(f"{ckpt}: holds a pickled "), message
    assert not (tmp_path / "pwned").exists() and _files(run / "distill") == {ckpt}


@pytest.mark.parametrize("kind", ["malicious-zip", "plain-dict"])
def test_bad_resume_state_is_refused(monkeypatch, capsys, tmp_path, idx_folder, kind):
    pytest.importorskip("torch")
    import torch

    run = tmp_path / "run"
    (run / "distill").mkdir(parents=True)
    state = run / "distill" / "teacher.train.pt"
    if kind == "plain-dict":
        torch.save({"epoch": 1}, state)
        fault = "not an edgekd training state (no settings key); delete it to start over"
    else:
        _checkpoint(kind, state, tmp_path / "pwned")
        fault = "holds a pickled "
    cfg = _distill_config(tmp_path, idx_folder)
    message = _error_line(monkeypatch, capsys, "distill", cfg, "--out", run, "--resume")
    assert message.startswith(f"{state}: {fault}"), message
    assert not (tmp_path / "pwned").exists() and not list(run.rglob("teacher.pt"))


# --- data -----------------------------------------------------------------------------------------------


def _break_idx(root: Path, kind: str) -> tuple[Path, str]:
    """Break one file of an IDX folder; (the file, the expected fault)."""
    images, labels = root / "train-images-idx3-ubyte.gz", root / "train-labels-idx1-ubyte.gz"
    raw = gzip.decompress(images.read_bytes())
    if kind == "truncated-images":
        images.write_bytes(gzip.compress(raw[:-10]))
        return images, "expected 3840 data bytes for shape (60, 8, 8), got 3830"
    if kind == "truncated-header":
        images.write_bytes(gzip.compress(raw[:9]))
        return images, "truncated IDX header"
    if kind == "wrong-magic":
        labels.write_bytes(gzip.compress(b"\x1f\x8b" + gzip.decompress(labels.read_bytes())[2:]))
        return labels, "not an IDX file (bad magic number)"
    if kind == "unknown-type":
        images.write_bytes(gzip.compress(raw[:2] + b"\x07" + raw[3:]))
        return images, "unknown IDX type byte 0x07"
    if kind == "label-count":
        write_idx(labels, np.zeros(59, np.uint8))
        return labels, f"expected 60 labels to match {images.name}, got shape (59,)"
    if kind == "labels-2d":
        write_idx(labels, np.zeros((60, 2), np.uint8))
        return labels, f"expected 60 labels to match {images.name}, got shape (60, 2)"
    if kind == "images-1d":
        write_idx(images, np.zeros(60, np.uint8))
        return images, "expected uint8 images of shape (N, H, W), got uint8 (60,)"
    if kind == "not-gzip":
        images.write_bytes(b"plain bytes, named .gz")
        return images, "re:cannot read \\(Not a gzipped file.*\\)"
    if kind == "missing":
        labels.unlink()
        return (
            root / "train-labels-idx1-ubyte",
            "re:\\[\\.gz\\]: file not found \\(expected an IDX data set folder\\)",
        )
    raise AssertionError(kind)


IDX_FAULTS = [
    "truncated-images",
    "truncated-header",
    "wrong-magic",
    "unknown-type",
    "label-count",
    "labels-2d",
    "images-1d",
    "not-gzip",
    "missing",
]


@pytest.mark.parametrize("kind", IDX_FAULTS)
def test_bad_idx_data_fails_before_training(monkeypatch, capsys, tmp_path, idx_folder, kind):
    pytest.importorskip("torch")
    path, fault = _break_idx(idx_folder, kind)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"device: cpu\ndata: {{root: {idx_folder}, val_size: 10}}\n")
    run = tmp_path / "run"
    message = _error_line(monkeypatch, capsys, "distill", cfg, "--out", run)
    if kind == "missing":
        assert message.startswith(str(path)), message
        _assert_message(message.removeprefix(str(path)), fault)
    else:
        assert message.startswith(f"{path}: "), message
        _assert_message(message.removeprefix(f"{path}: "), fault)
    assert not list(run.rglob("*.pt")) and not list(run.rglob("*.jsonl"))  # no model was trained


@pytest.mark.parametrize(
    "option, value",
    [("--calibration", np.nan), ("--calibration", np.inf), ("--test", -np.inf), ("--test", np.nan)],
    ids=["calibration-nan", "calibration-inf", "test-neg-inf", "test-nan"],
)
def test_non_finite_npz_for_export_from_onnx(monkeypatch, capsys, tmp_path, option, value):
    model = _good_onnx(tmp_path / "m.onnx")
    x = np.zeros((8, 1, 4, 4), np.float32)
    x[3, 0, 1, 2] = value
    data = tmp_path / "data.npz"
    np.savez(data, x=x, y=np.zeros(8, np.int64))
    out = tmp_path / "out"
    args = [option, data, *(["--int8", "static"] if option == "--calibration" else [])]
    message = _error_line(monkeypatch, capsys, "export", "--from", model, "--out", out, *args)
    assert (
        message == f"{data}: x holds 1 NaN or infinite value (first at index [3, 0, 1, 2]); expected finite"
    )
    assert not out.exists()


def _image_folder(root: Path, classes: dict[str, int], size=(10, 10)) -> Path:
    from PIL import Image

    for name, n in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", size, (40 * i % 255, 80, 120)).save(root / name / f"{i}.png")
    return root


def _folder_fault(tmp: Path, kind: str) -> tuple[dict, str]:
    """(data config, the exact message) of one broken image folder, npz file or factory."""
    root = _image_folder(tmp / "imgs", {"cat": 4, "dog": 4})
    folder = {"kind": "image_folder", "root": str(root)}
    if kind == "empty-class":
        (root / "fox").mkdir()
        return folder, f"{root / 'fox'}: class folder holds no images (.png/.jpg/.jpeg/.bmp/.webp)"
    if kind == "one-class":
        one = _image_folder(tmp / "one", {"cat": 4})
        expected = (
            "only one class folder ('cat'); an image folder needs one sub-folder per class, at least two"
        )
        return {"kind": "image_folder", "root": str(one)}, f"{one}: {expected}"
    if kind == "test-without-train":
        _image_folder(root / "test", {"cat": 2, "dog": 2})
        return folder, f"{root}: has val/ or test/ but no train/; put the training images in train/<class>/"
    if kind == "no-folder":
        return {
            "kind": "image_folder",
            "root": str(tmp / "nowhere"),
        }, f"{tmp / 'nowhere'}: image folder not found"
    if kind == "unreadable-image":
        (root / "dog" / "9.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
        return folder, f"re:{re.escape(str(root / 'dog' / '9.jpg'))}: cannot (decode|read) image \\(.+\\)"
    if kind == "mixed-sizes":
        from PIL import Image

        Image.new("RGB", (12, 10)).save(root / "dog" / "wide.png")
        return folder, (
            f"{root / 'dog' / 'wide.png'}: image is 10x12 (3 channels), 0.png is 10x10 (3 channels); "
            "set data.resize (and data.center_crop) to train on images of mixed sizes"
        )
    path = tmp / "d.npz"
    x, y = np.zeros((10, 1, 4, 4), np.uint8), np.arange(10) % 2
    npz = {"kind": "npz", "root": str(path)}
    arrays = {
        "npz-nan": (
            dict(x=np.where(np.eye(4) > 0, np.nan, 0.5)[None, None].repeat(10, 0), y=y),
            f"{path}:x: images contain NaN or Inf",
        ),
        "npz-label-count": (dict(x=x, y=y[:9]), f"{path}:x/y: 10 images but 9 labels"),
        "npz-fraction-labels": (
            dict(x=x, y=y + 0.5),
            f"{path}:y: labels must be whole numbers (found NaN, Inf or fractions)",
        ),
        "npz-negative-label": (dict(x=x, y=y - 1), f"{path}:y: negative label -1"),
        "npz-out-of-range": (
            dict(x=x.astype(np.float32) + 300, y=y),
            f"{path}:x: values span [300, 300]; expected [0, 1] or [0, 255]",
        ),
        "npz-channels": (
            dict(x=np.zeros((10, 4, 4, 4), np.uint8), y=y),
            f"{path}:x: 4 channels in layout NCHW; expected 1 or 3 (right layout?)",
        ),
        "npz-no-y": (dict(x=x), f"{path}: expected arrays 'x' and 'y', got ['x']"),
        "npz-one-class": (
            dict(x=x, y=np.zeros(10, np.int64)),
            f"{path}: the training split holds a single class; a classifier needs two or more",
        ),
    }
    if kind in arrays:
        data, expected = arrays[kind]
        np.savez(path, **data)
        return npz, expected
    assert kind == "factory-missing"
    spec = "nosuchmodule_edgekd:splits"
    return {
        "kind": "factory",
        "factory": spec,
    }, f"re:{re.escape(spec)}: cannot import the data factory \\(.+\\)"


FOLDER_FAULTS = [
    "empty-class", "one-class", "test-without-train", "no-folder", "unreadable-image", "mixed-sizes",
    "npz-nan", "npz-label-count",
    "npz-fraction-labels", "npz-negative-label", "npz-out-of-range", "npz-channels", "npz-no-y",
    "npz-one-class", "factory-missing",
]  # fmt: skip


@pytest.mark.parametrize("kind", FOLDER_FAULTS)
def test_bad_image_data_fails_before_training(monkeypatch, capsys, tmp_path, kind):
    pytest.importorskip("torch")
    pytest.importorskip("PIL")
    data, expected = _folder_fault(tmp_path, kind)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps({"device": "cpu", "data": {**data, "cache_dir": str(tmp_path / "cache")}}))
    run = tmp_path / "run"
    _assert_message(_error_line(monkeypatch, capsys, "distill", cfg, "--out", run), expected)
    assert not list(run.rglob("*.pt")) and not list(run.rglob("*.jsonl"))  # no model was trained
    cache = tmp_path / "cache"  # splits decoded before the fault are whole caches; no partial one is left
    assert not list(cache.glob(".*")) and all(p.with_suffix(".json").is_file() for p in cache.glob("*.u8"))


# --- results and report ---------------------------------------------------------------------------------


def _report_run(root: Path, lines: list[str] | None, *, manifest: bool = True) -> Path:
    """A run dir for `edgekd report`: bench/results.jsonl holding `lines`, and a bundle manifest."""
    if lines is not None:
        (root / "bench").mkdir(parents=True)
        (root / "bench" / "results.jsonl").write_text("".join(line + "\n" for line in lines))
    else:
        root.mkdir(parents=True)
    if manifest:
        (root / "bundle").mkdir()
        models = [{"name": "tiny", "file": "tiny.onnx", "format": "onnx", "precision": "fp32"}]
        write_manifest_for(root / "bundle", models)
    return root


GOOD = json.dumps(_record().to_dict())


def _with(**changes) -> str:
    data = _record().to_dict()
    data.update(changes)
    return json.dumps(data)


RESULTS_FAULTS = [
    (
        "corrupt-line",
        [GOOD, GOOD[: len(GOOD) // 2]],
        "re:2: invalid record \\(.+: line 1 column \\d+ \\(char \\d+\\)\\)",
    ),
    (
        "unknown-schema-version",
        [_with(schema_version=7)],
        "1: invalid record (BenchRecord: schema_version 7 is not one this edgekd reads (1))",
    ),
    (
        "unknown-key",
        [_with(colour="red")],
        "1: invalid record (BenchRecord: missing keys [], unknown keys ['colour'])",
    ),
    ("not-an-object", ["[1, 2, 3]"], "1: invalid record (BenchRecord: expected a JSON object, got list)"),
    (
        "negative-latency",
        [_with(latency={**_record().to_dict()["latency"], "p50": -1.0})],
        "1: invalid record (BenchRecord: latency.p50 must be positive (ms), got -1.0)",
    ),
    ("empty", [], "no benchmark records"),
]


@pytest.mark.parametrize("lines, fault", [c[1:] for c in RESULTS_FAULTS], ids=[c[0] for c in RESULTS_FAULTS])
def test_bad_results_stop_the_report(monkeypatch, capsys, tmp_path, lines, fault):
    run = _report_run(tmp_path / "run", lines)
    results = run / "bench" / "results.jsonl"
    message = _error_line(monkeypatch, capsys, "report", run)
    sep = ": " if fault == "no benchmark records" else ":"
    assert message.startswith(f"{results}{sep}"), message
    _assert_message(message.removeprefix(f"{results}{sep}"), fault)
    assert not (run / "report").exists()


@pytest.mark.parametrize(
    "lines, manifest, expected",
    [
        ([GOOD], False, "{run}/bundle/manifest.json: bundle manifest not found (run `edgekd export` first)"),
        (None, True, "{run}/bench/results.jsonl: benchmark results not found (run `edgekd bench` first)"),
    ],
    ids=["missing-manifest", "missing-results"],
)
def test_report_without_its_inputs(monkeypatch, capsys, tmp_path, lines, manifest, expected):
    run = _report_run(tmp_path / "run", lines, manifest=manifest)
    assert _error_line(monkeypatch, capsys, "report", run) == expected.format(run=run)
    assert not (run / "report").exists()


def test_report_with_a_bad_manifest(monkeypatch, capsys, tmp_path):
    run = _report_run(tmp_path / "run", [GOOD])
    data = manifest_dict(None, [{"name": "tiny", "file": "tiny.onnx", "format": "onnx", "precision": "fp32"}])
    data["models"][0]["precision"] = "int4"
    (run / "bundle" / "manifest.json").write_text(json.dumps(data))
    message = _error_line(monkeypatch, capsys, "report", run)
    assert message == (
        f"{run / 'bundle' / 'manifest.json'}: models.0.precision: Input should be 'fp32', 'fp16', 'int8' or "
        "'dynamic-int8' (got 'int4')"
    )
    assert not (run / "report").exists()


# --- concurrent appends ---------------------------------------------------------------------------------

_APPENDER = """
import json, sys
from benchmarks.records import BenchRecord, append_record
base = json.loads(open(sys.argv[1]).read())
for i in range(int(sys.argv[4])):
    append_record(sys.argv[2], BenchRecord.from_dict(dict(base, model=sys.argv[3], order=i)))
"""


def test_two_processes_appending_lose_and_split_no_record(tmp_path):
    import subprocess
    import sys

    from benchmarks.records import LatencyStats, read_records

    samples = [1.0 + i / 1000 for i in range(1000)]  # ~10 KB lines: more than one buffer each
    base = tmp_path / "base.json"
    base.write_text(json.dumps(_record(latency=LatencyStats.from_values(samples)).to_dict()))
    results = tmp_path / "results.jsonl"
    root = Path(__file__).resolve().parents[1]
    procs = [
        subprocess.Popen([sys.executable, "-c", _APPENDER, str(base), str(results), name, "500"], cwd=root)
        for name in ("a", "b")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    records = read_records(results)  # every line whole, or this raises naming the line
    for name in ("a", "b"):
        assert [r.order for r in records if r.model == name] == list(range(500))


def test_append_waits_for_another_writer_holding_the_lock(tmp_path):
    pytest.importorskip("fcntl")  # POSIX only, like the lock itself
    import subprocess
    import sys
    import time

    from benchmarks.records import append_record, read_records

    results = tmp_path / "results.jsonl"
    results.write_text("")
    holder = (
        "import fcntl, sys, time\n"
        "f = open(sys.argv[1], 'a')\n"
        "fcntl.flock(f.fileno(), fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "time.sleep(0.6)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", holder, str(results)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    start = time.perf_counter()
    append_record(results, _record())
    waited = time.perf_counter() - start
    proc.wait(timeout=10)
    assert waited > 0.3, f"append_record did not wait for the lock ({waited:.3f} s)"
    assert len(read_records(results)) == 1


# --- remote boards, sweeps, predict and binary files given as YAML (#35) -------------------------------

NOT_UTF8 = bytes(range(256)) * 4  # byte 128 is the first that is not UTF-8


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: nothing listens there


def _case_inputs(tmp_path: Path) -> dict[str, Path]:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(NOT_UTF8)
    loose = tmp_path / "loose"  # model files without a manifest: fine here, not a bundle for a board
    loose.mkdir()
    _good_onnx(loose / "m.onnx")
    (tmp_path / "notes.txt").write_text("not a model\n")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"base: {tmp_path / 'nope.yaml'}\nspace: {{distill.alpha: [0.1]}}\n")
    (tmp_path / "known_hosts").write_text("")
    return {"binary": binary, "loose": loose, "model": loose / "m.onnx", "sweep": sweep,
            "bundle": _bundle(tmp_path / "bundle"), "notes": tmp_path / "notes.txt"}  # fmt: skip


REMOTE_AND_MORE = [
    ("config-not-text", ["distill", "{binary}", "--out", "{tmp}/r"],
     "{binary}: not a YAML text file (byte 128 is not UTF-8)"),
    ("sweep-not-text", ["sweep", "{binary}", "--out", "{tmp}/s"],
     "{binary}: not a YAML text file (byte 128 is not UTF-8)"),
    ("suite-not-text", ["bench", "{model}", "--suite", "{binary}"],
     "{binary}: not a YAML text file (byte 128 is not UTF-8)"),
    ("sweep-base-missing", ["sweep", "{sweep}", "--out", "{tmp}/s"],
     "{tmp}/nope.yaml: base config not readable (No such file or directory)"),
    ("remote-folder-not-a-bundle", ["bench", "{loose}", "--target", "ssh://root@127.0.0.1:9"],
     "{loose}: no manifest.json, so not a bundle; give a bundle folder or one model file (.onnx, .pte, "
     ".tflite or .pt2) to measure on a board"),
    ("remote-not-a-model", ["bench", "{notes}", "--target", "ssh://root@127.0.0.1:9"],
     "{notes}: cannot benchmark a .txt file; expected .onnx, .pte, .tflite or .pt2"),
    ("remote-url-with-query", ["bench", "{model}", "--target", "ssh://root@127.0.0.1:9?key=x"],
     "ssh://root@127.0.0.1:9?key=x: expected ssh://user@host[:port][/dir]"),
    ("remote-unreachable", ["bench", "{model}", "--target", "ssh://root@127.0.0.1:{port}", "--known-hosts",
                            "{tmp}/known_hosts"],
     "re:127\\.0\\.0\\.1 \\(root@127\\.0\\.0\\.1:{port}\\): .*(Connect call failed|refused).*"),
    ("predict-file-not-in-bundle", ["predict", "{bundle}", "--file", "nope.onnx", "{notes}"],
     "--file 'nope.onnx': not in {bundle}/manifest.json; its files (1 of 1, closest first): student_kd.onnx"),
    ("predict-nothing-to-classify", ["predict", "{bundle}"],
     "{bundle}/manifest.json: give image files to classify"),
]  # fmt: skip


@pytest.mark.parametrize(
    "args, expected", [c[1:] for c in REMOTE_AND_MORE], ids=[c[0] for c in REMOTE_AND_MORE]
)
def test_remote_sweep_and_predict_mistakes_are_one_line(monkeypatch, capsys, tmp_path, args, expected):
    pytest.importorskip("asyncssh")
    names = {k: str(v) for k, v in _case_inputs(tmp_path).items()} | {"tmp": str(tmp_path)}
    names["port"] = str(_closed_port())
    before = _files(tmp_path)
    message = _error_line(monkeypatch, capsys, *[a.format(**names) for a in args])
    _assert_message(message, expected.format(**names) if not expected.startswith("re:") else
                    expected.replace("{port}", names["port"]))  # fmt: skip
    assert _files(tmp_path) == before  # nothing written: no run folder, no results, no half a sweep
