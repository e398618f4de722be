"""`edgekd predict` (issue #17): image files through the manifest's preprocessing and one file of a bundle,
in this process and on a torch-free board install; bad input is one line."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.backends import backend_for, load_backend
from benchmarks.manifest import parse_manifest, read_manifest
from benchmarks.predict import choose_entry, predict, softmax
from benchmarks.preprocess import to_float
from tests.conftest import edgekd_main, manifest_dict, onnx_classifier, write_manifest_for
from tests.test_board_install import _board_venv, _run, wheel  # noqa: F401  (wheel: a fixture)

N = 100  # test images written as PNG files
SIDE = 8
WEIGHT = np.random.default_rng(0).standard_normal((SIDE * SIDE, 3)).astype(np.float32)


def _predict(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """`edgekd predict ARGS` in this process: (exit code, stdout, stderr)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code, err = edgekd_main(monkeypatch, capsys, "predict", *args)
    return code, out.getvalue(), err


def _top1(doc: dict) -> np.ndarray:
    return np.array([p["top"][0]["index"] for p in doc["predictions"]])


def _save_png(path: Path, pixels: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(pixels).save(path)
    return path


# --- the tiny run's bundle: agreement with torch ----------------------------------------------------------


@pytest.fixture(scope="module")
def images(tiny_run, tmp_path_factory) -> tuple[list[Path], np.ndarray]:
    """The bundle's first 100 test images as PNG files, and their uint8 (N, 1, 28, 28) array."""
    with np.load(tiny_run / "bundle" / "data" / "test.npz") as data:
        x = data["x"][:N]
    folder = tmp_path_factory.mktemp("images")
    return [_save_png(folder / f"test_{i:03d}.png", img[0]) for i, img in enumerate(x)], x


@pytest.fixture(scope="module")
def torch_logits(tiny_run, images) -> np.ndarray:
    """The KD student's checkpoint in torch on the same images, normalized as the manifest says."""
    from toolkit.distill.checkpoints import load_checkpoint
    from toolkit.distill.train import predict as torch_predict

    model, _, _ = load_checkpoint(tiny_run / "distill" / "student_kd.pt")
    pre = read_manifest(tiny_run / "bundle").input.preprocessing
    return torch_predict(model, to_float(images[1], pre))


def test_default_file_agrees_with_torch(tiny_run, images, torch_logits, monkeypatch, capsys):
    paths, _ = images
    code, out, err = _predict(monkeypatch, capsys, tiny_run / "bundle", *paths, "--json", "--top-k", "3")
    assert code == 0, err
    doc = json.loads(out)
    labels = read_manifest(tiny_run / "bundle").labels
    assert doc["file"] == "student_kd.onnx"
    assert [p["image"] for p in doc["predictions"]] == [str(p) for p in paths]
    for pred in doc["predictions"]:
        top = pred["top"]
        assert len(top) == 3 and all(t["label"] == labels[t["index"]] for t in top)
        assert top[0]["probability"] >= top[1]["probability"] >= top[2]["probability"] > 0
    np.testing.assert_array_equal(_top1(doc), torch_logits.argmax(1))
    best = [p["top"][0]["probability"] for p in doc["predictions"]]
    np.testing.assert_allclose(best, softmax(torch_logits).max(1), rtol=0, atol=1e-5)


def _direct_top1(bundle: Path, file: str, x: np.ndarray) -> np.ndarray:
    """Top-1 of `file` run through its backend one image at a time, without `edgekd predict`."""
    manifest = read_manifest(bundle)
    entry = next(m for m in manifest.models if m.file == file)
    pre = manifest.input.preprocessing
    feed = (
        to_float(x.transpose(0, 2, 3, 1), pre, channel_axis=-1)
        if entry.layout == "NHWC"
        else to_float(x, pre)
    )
    backend = load_backend(backend_for(bundle / file))
    handle = backend.load(bundle / file, threads=1)
    return np.array([np.asarray(backend.run(handle, feed[i : i + 1])).argmax() for i in range(len(x))])


def test_int8_tflite_file_agrees_with_torch_and_with_its_runtime(
    tiny_run, images, torch_logits, monkeypatch, capsys
):
    paths, x = images
    bundle, file = tiny_run / "bundle", "student_kd_int8.tflite"
    code, out, err = _predict(monkeypatch, capsys, bundle, *paths, "--file", file, "--json", "--top-k", "1")
    assert code == 0, err
    doc = json.loads(out)
    top1 = _top1(doc)
    assert doc["file"] == file and all(len(p["top"]) == 1 for p in doc["predictions"])
    assert (top1 == torch_logits.argmax(1)).mean() >= 0.95
    np.testing.assert_array_equal(top1, _direct_top1(bundle, file, x))


def test_table_shows_top1_and_the_next_labels(tiny_run, images, monkeypatch, capsys):
    paths, _ = images
    code, out, err = _predict(monkeypatch, capsys, tiny_run / "bundle", *paths[:3], "--top-k", "2")
    assert code == 0, err
    labels = read_manifest(tiny_run / "bundle").labels
    assert "student_kd.onnx (onnxruntime)" in out
    for path in paths[:3]:
        (row,) = [line for line in out.splitlines() if str(path) in line]
        cells = [c.strip() for c in row.strip("│ ").split("│")]
        assert cells[1] in labels and 0 < float(cells[2]) <= 1, row
        label, prob = cells[3].rsplit(" (", 1)
        assert label in labels and float(prob.rstrip(")")) <= float(cells[2]), row


# --- a board install: no torch ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("package_index")
def test_predict_extra_on_a_torch_free_install(tiny_run, wheel, images, torch_logits, tmp_path):  # noqa: F811
    bin_ = _board_venv(tmp_path / "venv", f"{wheel}[predict]")  # also checks that no torch is installed
    probe = _run([bin_ / "python", "-c", "import torch"], cwd=tmp_path, check=False)
    assert probe.returncode == 1 and "No module named 'torch'" in probe.stderr
    paths, _ = images
    for file in ("student_kd.onnx", "student_kd.tflite"):
        proc = _run(
            [bin_ / "edgekd", "predict", tiny_run / "bundle", *paths, "--file", file, "--json"], cwd=tmp_path
        )
        doc = json.loads(proc.stdout)  # the whole of stdout is one JSON document
        assert doc["file"] == file and len(doc["predictions"]) == N
        np.testing.assert_array_equal(_top1(doc), torch_logits.argmax(1), err_msg=file)
    pt2 = tiny_run / "bundle" / "student_kd.pt2"
    proc = _run(
        [bin_ / "edgekd", "predict", pt2.parent, paths[0], "--file", pt2.name], cwd=tmp_path, check=False
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {pt2}: needs the torch runtime, which is not installed"), lines[0]


# --- a hand-made bundle: the arithmetic, the default file, fixed batches, bad input ----------------------


@pytest.fixture
def bundle(tmp_path) -> Path:
    """A Flatten+MatMul classifier over 1x8x8 images, 3 labels; the manifest has no image steps."""
    folder = tmp_path / "bundle"
    folder.mkdir()
    onnx_classifier(folder / "m.onnx", WEIGHT, SIDE)
    shape = {"shape": [None, 1, SIDE, SIDE], "dtype": "float32", "layout": "NCHW"}
    pre = {"scale": 1 / 255, "mean": [0.5], "std": [0.25]}
    models = [{"name": "m", "format": "onnx", "precision": "fp32", "file": "m.onnx"}]
    write_manifest_for(
        folder, models, labels=["a", "b", "c"], input={"name": "input", **shape, "preprocessing": pre}
    )
    return folder


def _pngs(folder: Path, n: int) -> tuple[list[Path], np.ndarray]:
    x = np.random.default_rng(1).integers(0, 256, (n, 1, SIDE, SIDE), dtype=np.uint8)
    return [_save_png(folder / f"{i}.png", img[0]) for i, img in enumerate(x)], x


def test_probabilities_are_the_softmax_of_the_files_logits(bundle, tmp_path):
    paths, x = _pngs(tmp_path, 5)
    result = predict(bundle, paths, top_k=3)
    logits = ((x.reshape(5, -1) / np.float32(255) - 0.5) / 0.25) @ WEIGHT.astype(np.float64)
    want = np.exp(logits - logits.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    for row, pred in zip(want, result.predictions, strict=True):
        assert [t.index for t in pred.top] == list(np.argsort(-row))
        assert [t.label for t in pred.top] == ["abc"[i] for i in np.argsort(-row)]
        np.testing.assert_allclose([t.probability for t in pred.top], np.sort(row)[::-1], rtol=1e-5)


def test_a_fixed_batch_file_is_fed_full_padded_batches(bundle, tmp_path, monkeypatch):
    """5 images through a file declared batch 4: two batches of 4, the last padded, the same answers."""
    paths, _ = _pngs(tmp_path, 5)
    dynamic = predict(bundle, paths).predictions
    data = json.loads((bundle / "manifest.json").read_text())
    data["models"][0]["batch"] = 4
    (bundle / "manifest.json").write_text(json.dumps(data))
    ort_backend = load_backend("onnxruntime")
    fed = []
    run = ort_backend.run
    monkeypatch.setattr(ort_backend, "run", lambda handle, x: fed.append(x.shape) or run(handle, x))
    assert predict(bundle, paths).predictions == dynamic
    assert fed == [(4, 1, SIDE, SIDE)] * 2


def test_color_images_of_any_size_are_converted_and_resized_by_the_steps(bundle, tmp_path):
    data = json.loads((bundle / "manifest.json").read_text())
    data["input"]["preprocessing"]["steps"] = [
        {"op": "convert", "mode": "L"},
        {"op": "resize", "size": [SIDE, SIDE]},
    ]
    (bundle / "manifest.json").write_text(json.dumps(data))
    rgb = _save_png(tmp_path / "rgb.png", np.full((30, 20, 3), 200, np.uint8))
    gray = _save_png(tmp_path / "gray.png", np.full((SIDE, SIDE), 200, np.uint8))
    a, b = predict(bundle, [rgb, gray]).predictions
    assert a.top == b.top


DEFAULTS = [  # (files in the manifest: name, role, format, precision), the default file
    ([("teacher", "onnx", "fp32"), ("student_kd", "tflite", "fp32"), ("student_kd", "onnx", "fp32")], 2),
    ([("teacher", "onnx", "fp32"), ("student_kd", "onnx", "int8"), ("student_x", "onnx", "fp32")], 1),
    ([("teacher", "onnx", "fp32"), ("teacher", "tflite", "fp32")], 0),
]


@pytest.mark.parametrize(("entries", "want"), DEFAULTS)
def test_default_file_is_the_kd_students_fp32_onnx_else_a_student_else_the_first(entries, want):
    models = [{"name": n, "format": f, "precision": p, "file": f"{n}_{p}.{f}"} for n, f, p in entries]
    manifest = parse_manifest(manifest_dict(None, models), where="manifest.json")
    assert choose_entry(manifest, None, where="manifest.json") is manifest.models[want]


def _error_line(monkeypatch, capsys, *args) -> str:
    code, out, err = _predict(monkeypatch, capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and not out and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_file_that_is_not_an_image_is_one_line_naming_it(bundle, tmp_path, monkeypatch, capsys):
    paths, _ = _pngs(tmp_path, 2)
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not an image\n")
    line = _error_line(monkeypatch, capsys, bundle, paths[0], bad, paths[1], "--json")
    assert line.startswith(f"error: {bad}: cannot decode image"), line


def test_an_unknown_file_is_one_line_listing_known_ones(bundle, tmp_path, monkeypatch, capsys):
    paths, _ = _pngs(tmp_path, 1)
    line = _error_line(monkeypatch, capsys, bundle, *paths, "--file", "m_int8.tflite")
    where = bundle / "manifest.json"
    assert line == f"error: --file 'm_int8.tflite': not in {where}; its files (1 of 1, closest first): m.onnx"


def test_an_unknown_file_lists_at_most_five_names(tiny_run, images, monkeypatch, capsys):
    line = _error_line(monkeypatch, capsys, tiny_run / "bundle", images[0][0], "--file", "student.tflite")
    listed = line.split("closest first): ")[1].split(", ")
    known = {m.file for m in read_manifest(tiny_run / "bundle").models}
    assert len(listed) == 5 and set(listed) <= known and listed[0].endswith(".tflite"), line


def test_a_changed_model_file_is_refused(bundle, tmp_path, monkeypatch, capsys):
    paths, _ = _pngs(tmp_path, 1)
    with open(bundle / "m.onnx", "ab") as f:
        f.write(b"\0")
    line = _error_line(monkeypatch, capsys, bundle, *paths)
    assert line.startswith(f"error: {bundle / 'm.onnx'}: sha256 "), line
