"""ExecuTorch `.pte` files: one exporter module and one backend module, nothing else, and they go through the
same parity check, benchmark and CLI as ONNX and TFLite files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("executorch")


def _job(model, x, y, precision: str, dst: Path, *, per_channel: bool = False):
    from export.exporters import ExportJob
    from toolkit.config import RunConfig

    sample = torch.from_numpy(x[:1])
    export = RunConfig().export
    return ExportJob(
        name="student_kd", model=model, sample=sample, precision=precision, dst=dst, settings=export,
        calib=x[:64], x_val=x, y_val=y, per_channel=per_channel, per_channel_reason="test", work=dst.parent,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pte_files(tmp_path_factory):
    """The fitted cnn_student as fp32 and int8 `.pte` files, with its torch logits and labels."""
    from export.exporters import exporter_for
    from tests.conftest import fitted_student

    model, x, y = fitted_student()
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    out = tmp_path_factory.mktemp("pte")
    settings = {}
    for precision in ("fp32", "int8"):
        job = _job(model, x, y, precision, out / f"student_kd_{precision}.pte")
        settings[precision] = exporter_for("pte", precision).write(job)
    return out, x, y, reference, settings


def test_pte_files_export_lowered_to_xnnpack_and_pass_parity(pte_files):
    from export.parity import check_parity

    out, x, y, reference, settings = pte_files
    fp32, int8 = out / "student_kd_fp32.pte", out / "student_kd_int8.pte"
    assert fp32.read_bytes()[4:8] == b"ET12"  # the ExecuTorch program's flatbuffer identifier
    assert 3 < fp32.stat().st_size / int8.stat().st_size < 4.2  # int8 weights: about 4x smaller
    for precision, path in (("fp32", fp32), ("int8", int8)):
        s = settings[precision]
        assert s.delegate == "XnnpackBackend" and 0 < s.delegated_nodes <= s.graph_nodes
        parity = check_parity(path, x, y, reference, precision=precision)
        assert parity.passed and parity.runtimes["executorch"] == "ok", parity
        assert parity.accuracy == pytest.approx((reference.argmax(1) == y).mean(), abs=0.01)
    assert check_parity(fp32, x, y, reference, precision="fp32").max_abs_diff < 1e-4
    assert settings["int8"].mode == "static" and settings["int8"].per_channel is False


def test_a_pte_file_outside_its_tolerance_fails_parity(pte_files):
    from export.parity import check_parity

    out, x, y, reference, _ = pte_files
    shuffled = reference[:, ::-1].copy()  # another model's logits: top-1 no longer agrees
    parity = check_parity(out / "student_kd_int8.pte", x, y, shuffled, precision="int8")
    assert not parity.passed and parity.top1_agreement < 0.95


def test_edgekd_bench_measures_a_pte_file_with_one_thread(pte_files, tmp_path):
    out, *_ = pte_files
    results = tmp_path / "r.jsonl"
    args = ["bench", str(out / "student_kd_int8.pte"), "--results", str(results), "--min-runs", "30"]
    r = subprocess.run(
        [sys.executable, "-m", "toolkit.cli.main", *args, "--min-time", "0", "--repeats", "2"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(rec["backend"], rec["format"], rec["round"]) for rec in records] == [
        ("executorch", "pte", 0),
        ("executorch", "pte", 1),
    ]
    assert all(rec["backend_info"]["threads"] == 1 and rec["latency"]["count"] >= 30 for rec in records)
    assert all(rec["runtime_version"] == "1.5.1" for rec in records)


def test_etdump_profile_times_xnnpack_operators_in_their_dtype(pte_files):
    """ExecuTorch's event tracer: every XNNPACK operator of the run with its dtype (F32 or QS8 in its name),
    timed over the runs after warm-up, inside the method's own time."""
    from export.executorch_backend import profile
    from toolkit.report.time_breakdown import breakdown

    out, x, *_ = pte_files
    for precision, dtype in (("fp32", "fp32"), ("int8", "int8")):
        p = profile(out / f"student_kd_{precision}.pte", x[:1], threads=1, runs=40, warmup=5)
        convs = [op for op in p.ops if op.op_type.startswith("Convolution (NHWC")]
        assert len(convs) == 3 and {op.dtype for op in convs} == {dtype}, [op.op_type for op in p.ops]
        assert all(op.provider == "XnnpackBackend" and op.calls == 40 for op in p.ops)
        assert p.runs == 40 and 0 < p.ops_us <= p.run_us
        assert breakdown(p).counts["conv/matmul"] == 4  # three convolutions and the classifier


def test_the_exporter_offers_fp32_and_int8_only(tmp_path):
    from export.exporters import exporter_for

    assert exporter_for("pte", "int8").format == "pte"
    with pytest.raises(ValueError, match="no exporter for format='pte' precision='fp16'"):
        exporter_for("pte", "fp16")


def test_an_unreadable_pte_file_is_one_line(tmp_path):
    from benchmarks.backends import load_backend

    bad = tmp_path / "broken.pte"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(ValueError, match=r"broken\.pte: executorch cannot load it"):
        load_backend("executorch").load(bad, threads=1)


@pytest.mark.slow
def test_edgekd_predict_on_pte_files_gives_torchs_labels(tmp_path, monkeypatch, capsys):
    """A run exporting only `.pte` files (fp32 and int8), then `edgekd predict` on 100 test images."""
    import yaml
    from PIL import Image

    from benchmarks.manifest import read_manifest
    from benchmarks.preprocess import to_float
    from tests.conftest import TINY
    from tests.test_predict import _predict
    from toolkit.distill.checkpoints import load_checkpoint
    from toolkit.distill.train import predict as torch_predict

    cfg = yaml.safe_load(TINY.read_text())
    cfg["export"].update(formats=["pte"], precisions=["fp32", "int8"], teacher_precisions=["fp32"])
    cfg["distill"]["scratch_control"] = False
    config, run = tmp_path / "pte.yaml", tmp_path / "run"
    config.write_text(yaml.safe_dump(cfg))
    from tests.conftest import edgekd_main

    for stage in (["distill", config, "--out", run], ["export", run]):
        code, err = edgekd_main(monkeypatch, capsys, *stage)
        assert code == 0, err
    manifest = read_manifest(run / "bundle")
    assert sorted(m.file for m in manifest.models) == ["student_kd.pte", "student_kd_int8.pte", "teacher.pte"]
    assert all(m.parity.passed and m.quantization.delegate == "XnnpackBackend" for m in manifest.models)
    with np.load(run / "bundle" / "data" / "test.npz") as data:
        x = data["x"][:100]
    paths = []
    for i, image in enumerate(x):
        paths.append(tmp_path / f"{i:03d}.png")
        Image.fromarray(image[0]).save(paths[-1])
    model, _, _ = load_checkpoint(run / "distill" / "student_kd.pt")
    torch_labels = torch_predict(model, to_float(x, manifest.input.preprocessing)).argmax(1)
    for file, least in (("student_kd.pte", 1.0), ("student_kd_int8.pte", 0.95)):
        code, out, err = _predict(monkeypatch, capsys, run / "bundle", *paths, "--file", file, "--json")
        assert code == 0, err
        doc = json.loads(out)
        assert doc["file"] == file and doc["backend"] == "executorch" and len(doc["predictions"]) == 100
        labels = np.array([p["top"][0]["index"] for p in doc["predictions"]])
        assert (labels == torch_labels).mean() >= least, (file, (labels == torch_labels).mean())


def test_pte_without_executorch_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    import importlib.util

    import yaml

    from tests.conftest import TINY, edgekd_main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "executorch" else real(name, *a)
    )
    cfg = yaml.safe_load(TINY.read_text())
    cfg["export"]["formats"] = ["onnx", "pte"]
    config = tmp_path / "pte.yaml"
    config.write_text(yaml.safe_dump(cfg))
    code, err = edgekd_main(monkeypatch, capsys, "run", config, "--out", tmp_path / "run")
    assert code == 1 and not (tmp_path / "run").exists()
    assert (
        err.strip()
        == "error: executorch is not installed; this command needs it: pip install 'edgekd[executorch]'"
    )
