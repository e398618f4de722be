"""The text task through the same stages as images: a CSV, a tokenizer and a (tiny, random) BERT teacher
in; checkpoints, a bundle with the tokenizer, benchmarks and a report out (`tests/text_data.py`)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from benchmarks.files import sha256_file
from benchmarks.manifest import TokenPreprocessing, read_manifest
from tests.conftest import edgekd_main
from toolkit.cli.main import app

pytest.importorskip("transformers")


def test_a_text_run_ships_token_id_files_with_their_tokenizer(text_run):
    m = read_manifest(text_run / "bundle")
    pre = m.input.preprocessing
    assert isinstance(pre, TokenPreprocessing) and pre.seq_len == 16 and pre.pad_id == 0
    assert m.input.dtype == "int64" and m.input.layout == "NL" and m.input.shape == [None, 16]
    assert sha256_file(text_run / "bundle" / "tokenizer.json") == pre.sha256
    assert m.labels == ["negative", "positive"]
    files = {(e.name, e.format, e.precision): e for e in m.models}
    assert set(files) == {
        ("teacher", "onnx", "fp32"),
        ("teacher", "tflite", "fp32"),
        ("student_kd", "onnx", "fp32"),
        ("student_kd", "onnx", "int8"),
        ("student_kd", "onnx", "dynamic-int8"),
        ("student_kd", "tflite", "fp32"),
        ("student_kd", "tflite", "int8"),
        ("student_scratch", "onnx", "fp32"),
        ("student_scratch", "tflite", "fp32"),
    }
    # litert-torch turns the int64 ids into int32; each file says what it takes
    assert {e.input_dtype for k, e in files.items() if k[1] == "tflite"} == {"int32"}
    assert {e.input_dtype for k, e in files.items() if k[1] == "onnx"} == {"int64"}
    assert all(e.parity.passed and e.layout == "NL" for e in m.models)
    with np.load(text_run / "bundle" / m.test_data.file) as data:
        assert data["x"].dtype == np.int64 and data["x"].shape[1:] == (16,) and len(data["x"]) >= 200


def test_the_teacher_head_trains_on_cached_embeddings_and_the_students_on_its_logits(
    text_run, tmp_path, monkeypatch
):
    summary = json.loads((text_run / "distill" / "summary.json").read_text())
    teacher, kd = summary["teacher"], summary["student_kd"]
    assert teacher["arch"] == "minilm" and teacher["params"] > 20_000
    assert {s: e["seconds"] is not None for s, e in teacher["embeddings"].items()} == {
        "train": True,
        "val": True,
    }
    assert kd["teacher_targets"] == "cached" and kd["params"] < teacher["params"]
    # the corpus' words decide the class: a model that learned nothing would score about 50 %
    assert teacher["test_accuracy"] > 0.7 and kd["test_accuracy"] > 0.7
    assert "sentence embeddings train computed in" in (text_run / "output.txt").read_text()
    # distilling again elsewhere reads the embeddings from the cache instead of encoding again
    monkeypatch.setenv("XDG_CACHE_HOME", str(text_run.parent / "cache"))
    result = CliRunner().invoke(app, ["distill", str(text_run / "config.yaml"), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    again = json.loads((tmp_path / "distill" / "summary.json").read_text())
    assert all(e["seconds"] is None for e in again["teacher"]["embeddings"].values())
    assert "sentence embeddings train read from cache, val read from cache" in result.output
    assert again["teacher"]["test_accuracy"] == teacher["test_accuracy"]


def test_every_text_file_is_benchmarked_with_its_accuracy_next_to_the_teacher(text_run):
    records = [json.loads(line) for line in (text_run / "bench" / "results.jsonl").read_text().splitlines()]
    m = read_manifest(text_run / "bundle")
    parity = {(e.name, e.format, e.precision): e.parity.accuracy for e in m.models}
    measured = {(r["model"], r["format"], r["precision"]): r["accuracy"] for r in records}
    assert set(measured) == set(parity)
    for key, acc in measured.items():  # the board's accuracy pass (stored ids) matches export's parity
        assert acc == pytest.approx(parity[key], abs=1e-9), key
    report = (text_run / "report" / "report.md").read_text()
    assert "| **teacher** | onnx | fp32 |" in report and "| student_kd | onnx | dynamic-int8 |" in report


def test_predict_text_gives_the_labels_torch_gives(text_run):
    from benchmarks.predict import predict
    from tests.text_data import torch_labels

    texts, want = torch_labels(text_run, text_run / "more.csv", n=200, seed=7)
    for file in ("student_kd.onnx", "student_kd.tflite"):
        got = predict(text_run / "bundle", texts=texts, file=file, top_k=2)
        assert [p.top[0].index for p in got.predictions] == want, file
        assert got.predictions[0].image == texts[0] and got.predictions[0].kind == "text"
    result = CliRunner().invoke(app, ["predict", str(text_run / "bundle"), "--text", texts[0], "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["predictions"][0]["text"] == texts[0]


def test_text_bundles_refuse_images_and_text_configs_name_a_missing_tokenizer(
    text_run, tmp_path, monkeypatch, capsys
):
    img = tmp_path / "x.png"
    img.write_bytes(b"\x89PNG")
    code, err = edgekd_main(monkeypatch, capsys, "predict", text_run / "bundle", img)
    assert code == 1 and err.strip().endswith(
        "a text bundle (token ids) classifies texts (--text), not image files"
    )
    cfg = (text_run / "config.yaml").read_text().replace("tokenizer.json", "missing.json")
    (tmp_path / "bad.yaml").write_text(cfg)
    code, err = edgekd_main(monkeypatch, capsys, "distill", tmp_path / "bad.yaml", "--out", tmp_path / "r")
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.strip().endswith("missing.json: tokenizer file not found (run `make text-data`)"), err


def test_a_board_is_sent_the_tokenizer_with_the_files(text_run):
    from toolkit.fleet.ssh import _bundle_files

    files = _bundle_files(text_run / "bundle")
    assert files["tokenizer.json"] == sha256_file(text_run / "bundle" / "tokenizer.json")
    assert {"student_kd.onnx", "student_kd.tflite", "data/test.npz", "manifest.json"} <= set(files)


def test_text_configs_get_exports_that_load_and_refuse_image_only_options(text_run, tmp_path):
    import yaml

    from toolkit.config import load_config
    from toolkit.errors import ConfigError

    cfg = yaml.safe_load((text_run / "config.yaml").read_text())
    del cfg["export"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    e = load_config(tmp_path / "c.yaml").export
    assert (e.formats, e.teacher_precisions, e.tflite_precisions) == (
        ["onnx", "tflite"],
        ["fp32", "dynamic-int8"],
        ["fp32", "fp16", "int8"],
    )
    assert e.onnx_dynamic_per_channel is True
    assert e.precisions == ["fp32", "fp16", "int8", "dynamic-int8"]
    for change, message in (
        ({"export": {"formats": ["onnx", "torch"]}}, "torch (.pt2) is not offered with text data"),
        ({"export": {"tflite_layout": "NHWC"}}, "tflite_layout applies to images"),
        ({"distill": {"augment": True}}, "augment shifts and flips images"),
        ({"distill": {"views": {"erase": 0.5}}}, "distill.views.erase erases image boxes"),
    ):
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**cfg, **change}))
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config(tmp_path / "bad.yaml")
