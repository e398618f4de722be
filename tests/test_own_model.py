"""`edgekd export --model`: a user's own torch model bundled without distilling, and taken unchanged by
`edgekd bench` and `edgekd report` (issue #17)."""

from __future__ import annotations

import json

import pytest
import yaml

from benchmarks.manifest import read_manifest
from benchmarks.records import read_records
from tests.conftest import edgekd_main
from tests.image_data import user_model as make_user_model
from tests.image_data import write_image_folder
from tests.test_bad_input import _error_line

pytest.importorskip("PIL")
torch = pytest.importorskip("torch")


@pytest.fixture
def user_model(tmp_path, monkeypatch):
    """An image folder, a data config for it, and `userzoo:tiny_net` with saved weights on sys.path."""
    write_image_folder(tmp_path / "imgs", {"cat": 16, "dog": 12, "fox": 8})
    net, _ = make_user_model(tmp_path / "zoo", monkeypatch)
    cfg = {
        "data": {
            "kind": "image_folder",
            "root": str(tmp_path / "imgs"),
            "resize": [24, 24],
            "cache_dir": str(tmp_path / "cache"),
        },
        "export": {"formats": ["onnx"], "teacher_precisions": ["fp32", "int8"], "calibration_samples": 8},
        "bench": {"warmup": 1, "min_runs": 3, "min_time_s": 0, "repeats": 1},
    }
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path, net


def test_factory_model_bundle_goes_through_bench_and_report(user_model, monkeypatch, capsys):
    tmp, _ = user_model
    out = tmp / "own"
    args = ["export", "--model", "userzoo:tiny_net", "--weights", str(tmp / "zoo" / "w.pt")]
    code, err = edgekd_main(monkeypatch, capsys, *args, "--data", str(tmp / "data.yaml"), "--out", str(out))
    assert code == 0, err
    manifest = read_manifest(out / "bundle")
    assert {(m.name, m.format, m.precision) for m in manifest.models} == {
        ("teacher", "onnx", "fp32"),
        ("teacher", "onnx", "int8"),
    }
    assert all(m.parity.passed for m in manifest.models) and manifest.labels == ["cat", "dog", "fox"]
    assert manifest.input.shape == [None, 3, 24, 24]
    code, err = edgekd_main(monkeypatch, capsys, "bench", str(out))
    assert code == 0, err
    records = read_records(out / "bench" / "results.jsonl")
    assert {(r.model, r.precision) for r in records} == {("teacher", "fp32"), ("teacher", "int8")}
    assert all(r.accuracy is not None for r in records)
    code, err = edgekd_main(monkeypatch, capsys, "report", str(out))
    assert code == 0, err
    report = (out / "report" / "report.md").read_text()
    assert "teacher" in report and "3 classes: cat, dog, fox" in report
    summary = json.loads((out / "distill" / "summary.json").read_text())
    assert summary["teacher"]["loaded"] is True and "student_kd" not in summary


def test_exported_program_file_as_model(user_model, monkeypatch, capsys):
    tmp, net = user_model
    program = torch.export.export(net, (torch.zeros(1, 3, 24, 24),))
    torch.export.save(program, tmp / "net.pt2")
    out = tmp / "pt2"
    args = ["export", "--model", str(tmp / "net.pt2"), "--data", str(tmp / "data.yaml"), "--out", str(out)]
    code, err = edgekd_main(monkeypatch, capsys, *args)
    assert code == 0, err
    assert all(m.parity.passed for m in read_manifest(out / "bundle").models)


def test_model_needs_data_and_out(user_model, monkeypatch, capsys):
    tmp, _ = user_model
    msg = _error_line(monkeypatch, capsys, "export", "--model", "userzoo:tiny_net", "--out", str(tmp / "x"))
    assert msg == "--model: give --data CONFIG and --out DIR (and no run directory or --from)"
    net = str(tmp / "zoo" / "w.pt")
    args = [
        "export",
        "--model",
        net,
        "--weights",
        net,
        "--data",
        str(tmp / "data.yaml"),
        "--out",
        str(tmp / "x"),
    ]
    msg = _error_line(monkeypatch, capsys, *args)
    assert msg == f"{net}: --weights goes with --model package.module:factory, not a file"
