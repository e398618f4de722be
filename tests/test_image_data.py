"""A user's own images: image folders (PNG/JPEG, RGB, any size), arrays and factories, their preprocessing,
the decode cache, and `edgekd run` end to end with a factory teacher (issue #17)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmarks.manifest import read_manifest
from benchmarks.preprocess import decode_image, image_steps, to_float
from tests.conftest import edgekd_main
from tests.image_data import user_model, write_image_folder
from tests.test_bad_input import _error_line
from toolkit.config import RunConfig
from toolkit.data import load_splits
from toolkit.data.store import FloatView, RowStore

PIL = pytest.importorskip("PIL.Image")


def _data(tmp_path: Path, **over) -> RunConfig:
    data = {"kind": "image_folder", "root": str(tmp_path / "imgs"), "cache_dir": str(tmp_path / "cache")}
    return RunConfig.model_validate({"data": {**data, **over}})


def test_folder_classes_splits_and_preprocessing(tmp_path):
    write_image_folder(tmp_path / "imgs", {"cat": 30, "dog": 20, "fox": 10})
    s = load_splits(_data(tmp_path, resize=[24, 24]).data, seed=0)
    assert s.labels == ("cat", "dog", "fox")
    assert s.input_shape == (3, 24, 24)
    assert len(s.train_y) + len(s.val_y) + len(s.test_y) == 60
    # stratified: every class in every split, in proportion
    for y in (s.train_y, s.val_y, s.test_y):
        assert set(y.tolist()) == {0, 1, 2}
    assert np.bincount(s.val_y).tolist() == [3, 2, 1]
    # the manifest's steps decode a file exactly as training saw it
    pre = s.preprocessing
    assert [st.op for st in pre.steps] == ["convert", "resize"] and pre.steps[0].mode == "RGB"
    first = sorted((tmp_path / "imgs" / "cat").iterdir())
    assert isinstance(s.train_x, RowStore)
    assert len(pre.mean) == 3 and all(0 < m < 1 for m in pre.mean)
    decoded = decode_image(first[0], pre.steps)
    assert decoded.shape == (3, 24, 24)
    rows = [np.array_equal(s.train_x[i], decoded) for i in range(len(s.train_y))]
    assert any(rows)


def test_split_subfolders_are_used_and_classes_come_from_train(tmp_path):
    root = tmp_path / "imgs"
    write_image_folder(root / "train", {"cat": 8, "dog": 6}, sizes=((16, 16),))
    write_image_folder(root / "val", {"cat": 2, "dog": 2}, sizes=((16, 16),), seed=1)
    write_image_folder(root / "test", {"cat": 3, "dog": 1}, sizes=((16, 16),), seed=2)
    s = load_splits(_data(tmp_path).data, seed=0)
    assert (len(s.train_y), len(s.val_y), len(s.test_y)) == (14, 4, 4)
    assert s.test_y.tolist() == [0, 0, 0, 1]


def test_gray_rgba_and_palette_images(tmp_path):
    root = tmp_path / "imgs"
    for cls, mode in (("a", "L"), ("b", "L")):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            PIL.new(mode, (10, 10), 40 * i).save(root / cls / f"{i}.png")
    s = load_splits(_data(tmp_path).data, seed=0)
    assert s.input_shape == (1, 10, 10)  # every image gray: one channel
    PIL.new("RGBA", (10, 10), (255, 0, 0, 128)).save(root / "a" / "rgba.png")
    PIL.new("P", (10, 10), 3).save(root / "b" / "pal.png")
    s = load_splits(_data(tmp_path).data, seed=0)
    assert s.input_shape == (3, 10, 10)
    red = decode_image(root / "a" / "rgba.png", s.steps)
    assert red[:, 0, 0].tolist() == [255, 0, 0]


def test_decode_cache_is_reused_and_rebuilt_when_a_file_changes(tmp_path):
    write_image_folder(tmp_path / "imgs", {"cat": 6, "dog": 6}, sizes=((12, 12),))
    cfg = _data(tmp_path).data
    load_splits(cfg, seed=0)
    built = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()}
    load_splits(cfg, seed=0)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()} == built  # not rebuilt
    victim = sorted((tmp_path / "imgs" / "cat").iterdir())[0]
    PIL.new("RGB", (12, 12), (1, 2, 3)).save(victim)
    os.utime(victim, ns=(1, 1))
    s = load_splits(cfg, seed=0)
    assert len(list((tmp_path / "cache").glob("*.u8"))) > len([p for p in built if p.suffix == ".u8"])
    all_rows = np.concatenate([np.asarray(s.train_x), np.asarray(s.val_x), np.asarray(s.test_x)])
    assert any((r[:, 0, 0] == [1, 2, 3]).all() for r in all_rows)


def test_row_store_reads_rows_in_any_order_and_float_view_matches(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (7, 3, 4, 5), dtype=np.uint8)
    (tmp_path / "rows.u8").write_bytes(x.tobytes())
    store = RowStore(tmp_path / "rows.u8", x.shape)
    assert np.array_equal(store[np.array([5, 0, 5, 2])], x[[5, 0, 5, 2]])
    assert np.array_equal(store[2:4], x[2:4]) and np.array_equal(store[3], x[3])
    sub = store.subset(np.array([6, 1]))
    assert sub.shape == (2, 3, 4, 5) and np.array_equal(sub[:], x[[6, 1]])
    pre = image_steps(mode="RGB")
    from benchmarks.manifest import Preprocessing

    p = Preprocessing(scale=1 / 255, mean=[0.1, 0.2, 0.3], std=[0.5, 0.6, 0.7], steps=pre)
    view = FloatView(store, p)
    assert np.array_equal(view[[1, 4]], to_float(x[[1, 4]], p))
    expected = (x[1, 2].astype(np.float32) / 255 - 0.3) / 0.7
    assert np.allclose(view[[1]][0, 2], expected, atol=1e-6)


def test_npz_layouts_floats_and_given_splits(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((40, 8, 8, 3)).astype(np.float32)  # NHWC floats in [0, 1]
    y = np.repeat([0, 1], 20)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y, x_test=x[:6], y_test=y[:6], labels=np.array(["no", "yes"]))
    cfg = RunConfig.model_validate({"data": {"kind": "npz", "root": str(path), "layout": "NHWC"}}).data
    s = load_splits(cfg, seed=0)
    assert s.input_shape == (3, 8, 8) and s.labels == ("no", "yes")
    assert len(s.test_y) == 6 and len(s.train_y) + len(s.val_y) == 40
    assert s.train_x.dtype == np.uint8
    assert np.array_equal(s.test_x[0], np.rint(x[0].transpose(2, 0, 1) * 255).astype(np.uint8))


def test_factory_data(tmp_path, monkeypatch):
    (tmp_path / "mydata.py").write_text(
        "import numpy as np\n"
        "def splits():\n"
        "    rng = np.random.default_rng(0)\n"
        "    x = rng.integers(0, 256, (30, 12, 12), dtype=np.uint8)\n"
        "    y = np.arange(30) % 3\n"
        "    return {'train': (x, y), 'test': (x[:9], y[:9]), 'labels': ['a', 'b', 'c']}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = RunConfig.model_validate({"data": {"kind": "factory", "factory": "mydata:splits", "layout": "NHW"}})
    s = load_splits(cfg.data, seed=0)
    assert s.input_shape == (1, 12, 12) and s.labels == ("a", "b", "c") and len(s.test_y) == 9


def _bad(tmp_path: Path, data: dict) -> list[str]:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"cache_dir": str(tmp_path / "cache"), **data}}))
    return ["distill", str(cfg), "--out", str(tmp_path / "run")]


def test_bad_image_data_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    root = tmp_path / "imgs"
    write_image_folder(root, {"cat": 4, "dog": 4}, sizes=((10, 10),))
    (root / "fox").mkdir()
    msg = _error_line(monkeypatch, capsys, *_bad(tmp_path, {"kind": "image_folder", "root": str(root)}))
    assert msg == f"{root / 'fox'}: class folder holds no images (.png/.jpg/.jpeg/.bmp/.webp)"
    (root / "fox" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    msg = _error_line(monkeypatch, capsys, *_bad(tmp_path, {"kind": "image_folder", "root": str(root)}))
    assert msg.startswith(f"{root / 'fox' / 'broken.png'}: cannot") and len(msg) < 300
    (root / "fox" / "broken.png").unlink()
    PIL.new("RGB", (14, 10)).save(root / "fox" / "wide.png")
    msg = _error_line(monkeypatch, capsys, *_bad(tmp_path, {"kind": "image_folder", "root": str(root)}))
    assert msg.startswith(f"{root / 'fox' / 'wide.png'}: image is 10x14 (3 channels), ")
    assert msg.endswith("set data.resize (and data.center_crop) to train on images of mixed sizes")
    assert not list((tmp_path / "cache").glob("*.u8"))  # no half-built cache left looking whole
    one = tmp_path / "one"
    write_image_folder(one, {"cat": 4}, sizes=((10, 10),))
    msg = _error_line(monkeypatch, capsys, *_bad(tmp_path, {"kind": "image_folder", "root": str(one)}))
    assert msg == (
        f"{one}: only one class folder ('cat'); an image folder needs one sub-folder per class, at least two"
    )
    assert not (tmp_path / "run" / "distill" / "summary.json").exists()


def test_bad_arrays_are_one_line(tmp_path, monkeypatch, capsys):
    path = tmp_path / "d.npz"
    x = np.zeros((10, 1, 4, 4), np.float32)
    x[3, 0, 1, 1] = np.nan
    np.savez(path, x=x, y=np.arange(10) % 2)
    msg = _error_line(monkeypatch, capsys, *_bad(tmp_path, {"kind": "npz", "root": str(path)}))
    assert msg == f"{path}:x: images contain NaN or Inf"
    np.savez(path, x=np.zeros((10, 1, 4, 4), np.uint8), y=np.arange(9))
    msg = _error_line(monkeypatch, capsys, *_bad(tmp_path, {"kind": "npz", "root": str(path)}))
    assert msg == f"{path}:x/y: 10 images but 9 labels"


@pytest.mark.slow
@pytest.mark.parametrize("side", [32, 96])
def test_run_end_to_end_on_an_image_folder_with_a_factory_teacher(tmp_path, monkeypatch, capsys, side):
    """`edgekd run` on PNG+JPEG RGB images of mixed sizes, teacher `{factory, path}`: every file passes
    parity, the manifest and report carry the class names and the preprocessing steps."""

    write_image_folder(tmp_path / "imgs")
    _, weights = user_model(tmp_path / "zoo", monkeypatch)
    cfg = {
        "data": {
            "kind": "image_folder",
            "root": str(tmp_path / "imgs"),
            "resize": [side, side],
            "cache_dir": str(tmp_path / "cache"),
        },
        "teacher": {"source": {"factory": "userzoo:tiny_net", "path": str(weights)}},
        "student": {"arch": "cnn_student", "epochs": 2, "batch_size": 16},
        "export": {
            "formats": ["onnx", "tflite"],
            "precisions": ["fp32", "int8"] if side == 96 else ["fp32", "fp16", "int8", "dynamic-int8"],
            "teacher_precisions": ["fp32"],
            "calibration_samples": 16,
        },
        "bench": {"warmup": 1, "min_runs": 3, "min_time_s": 0, "repeats": 1},
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    run = ["run", str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "r")]
    code, err = edgekd_main(monkeypatch, capsys, *run)
    assert code == 0, err
    manifest = read_manifest(tmp_path / "r" / "bundle")
    assert manifest.labels == ["cat", "dog", "fox"]
    assert manifest.input.shape == [None, 3, side, side]
    assert [s.model_dump() for s in manifest.input.preprocessing.steps] == [
        {"op": "convert", "mode": "RGB"},
        {"op": "resize", "size": [side, side], "interpolation": "bilinear"},
    ]
    assert len(manifest.input.preprocessing.mean) == 3
    assert manifest.models and all(m.parity.passed for m in manifest.models)
    assert {m.format for m in manifest.models} == {"onnx", "tflite"} and not manifest.failures
    report = (tmp_path / "r" / "report" / "report.md").read_text()
    assert "3 classes: cat, dog, fox" in report
    summary = json.loads((tmp_path / "r" / "distill" / "summary.json").read_text())
    assert summary["teacher"]["source"]["kind"] == "factory"
    # the random-weight teacher is worse than training from scratch, and the run says so
    assert any(w.startswith("teacher scores") for w in summary["warnings"])
    assert "**Training warning:** teacher scores" in report


def test_teacher_with_its_own_size_and_normalization(tmp_path, monkeypatch, capsys):
    """A teacher that expects 48 px inputs normalized its own way, on 24 px data: the run maps the student's
    input to the teacher's (resize + renormalize), and its logits are the teacher's on that input."""
    import torch
    import torch.nn.functional as F

    from toolkit.distill.checkpoints import load_checkpoint
    from toolkit.distill.context import load_splits

    write_image_folder(tmp_path / "imgs", {"cat": 12, "dog": 12, "fox": 12})
    raw, weights = user_model(tmp_path / "zoo", monkeypatch, seed=1)
    source = {"factory": "userzoo:tiny_net", "path": str(weights)}
    source |= {"input_size": [48, 48], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    data = {"kind": "image_folder", "root": str(tmp_path / "imgs"), "resize": [24, 24]}
    cfg = {"data": {**data, "cache_dir": str(tmp_path / "cache")}, "teacher": {"source": source}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    args = ["train-teacher", str(tmp_path / "cfg.yaml"), "--out", str(run)]
    code, err = edgekd_main(monkeypatch, capsys, *args)
    assert code == 0, err
    model, spec, _ = load_checkpoint(run / "distill" / "teacher.pt")
    splits = load_splits(RunConfig.model_validate(cfg))
    x = torch.from_numpy(splits.normalize(splits.test_x))
    u = torch.from_numpy(np.asarray(splits.test_x, dtype=np.float32) / 255)
    expected = raw(F.interpolate((u - 0.5) / 0.25, size=(48, 48), mode="bilinear", align_corners=False))
    with torch.no_grad():
        assert torch.allclose(model(x), expected, atol=1e-4)
    summary = json.loads((run / "distill" / "summary.json").read_text())
    top1 = float((expected.argmax(1).numpy() == splits.test_y).mean())
    assert summary["teacher"]["test_accuracy"] == pytest.approx(top1)


def test_sixteen_bit_gray_is_scaled_not_clipped(tmp_path):
    arr = np.arange(16, dtype=np.uint16).reshape(4, 4) * 4096  # 0 ... 61440 of 65535
    PIL.fromarray(arr).save(tmp_path / "a.png")  # uint16 -> a 16-bit gray PNG
    out = decode_image(tmp_path / "a.png", image_steps(mode="L"))
    assert out.shape == (1, 4, 4) and out.ravel().tolist() == [v >> 8 for v in arr.ravel().tolist()]


def test_empty_selections_and_single_images(tmp_path):
    from benchmarks.manifest import Preprocessing

    x = np.random.default_rng(1).integers(0, 256, (5, 3, 2, 2), dtype=np.uint8)
    (tmp_path / "r.u8").write_bytes(x.tobytes())
    store = RowStore(tmp_path / "r.u8", x.shape)
    assert store[[]].shape == (0, 3, 2, 2) and store.subset(np.array([], int))[:].shape == (0, 3, 2, 2)
    assert np.array_equal(store[-1], x[-1])
    pre = Preprocessing(scale=1 / 255, mean=[0.1, 0.2, 0.3], std=[0.5, 0.6, 0.7])
    view = FloatView(store, pre)
    assert np.allclose(view[2], view[[2]][0])  # one image (C, H, W) normalized per channel like a batch


def test_calibration_sample_spans_the_classes():
    from toolkit.pipeline.export_stage import _calibration_rows

    cfg = RunConfig.model_validate({"export": {"calibration_samples": 30}})
    rows = _calibration_rows(300, cfg)  # 300 training rows sorted by class, 100 per class
    assert len(rows) == 30 and len(set(rows.tolist())) == 30 and {r // 100 for r in rows} == {0, 1, 2}
    assert np.array_equal(rows, _calibration_rows(300, cfg))  # seeded
