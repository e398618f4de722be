"""A board's install: edgekd with only a bench extra, in a fresh venv without torch, benchmarks a bundle."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Slow (fresh venvs installed from the package index): run by `make test`, deselected by `make test-fast`.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("package_index")]

REPO = Path(__file__).resolve().parents[1]
TORCH_STACK = {"torch", "litert-torch", "onnxscript"}


def _run(args: list, *, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run outside the repo and the test venv, so only what the new venv installed can be imported."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    if check:
        assert proc.returncode == 0, f"{args}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """edgekd's wheel, built from a copy of the sources so that the build writes nothing into the repo."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src)
    for pkg in ("toolkit", "export", "benchmarks"):
        shutil.copytree(REPO / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, src], cwd=src)
    return next(dist.glob("edgekd-*.whl"))


def _board_venv(root: Path, *requirements: str) -> Path:
    """A fresh venv with `requirements` installed, checked to hold no torch; returns its bin folder."""
    _run([sys.executable, "-m", "venv", root], cwd=root.parent)
    bin_ = root / "bin"
    _run([bin_ / "python", "-m", "pip", "install", "-q", *requirements], cwd=root)
    listed = json.loads(_run([bin_ / "python", "-m", "pip", "list", "--format=json"], cwd=root).stdout)
    names = {p["name"].lower().replace("_", "-") for p in listed}
    assert "edgekd" in names and not names & TORCH_STACK, names
    probe = _run([bin_ / "python", "-c", "import torch"], cwd=root, check=False)
    assert probe.returncode == 1 and "No module named 'torch'" in probe.stderr
    where = _run([bin_ / "python", "-c", "import benchmarks; print(benchmarks.__file__)"], cwd=root).stdout
    assert Path(where.strip()).is_relative_to(root), where  # the installed copy, not the repo's
    return bin_


def _bench(bin_: Path, bundle: Path, results: Path) -> subprocess.CompletedProcess:
    args = [bin_ / "edgekd", "bench", bundle, "--results", results, "--min-runs", "5", "--min-time", "0"]
    args += ["--repeats", "1"]  # one round: this test is about the install, not the statistics
    return _run(args, cwd=results.parent, check=False)


def _records(results: Path) -> list[dict]:
    return [json.loads(line) for line in results.read_text().splitlines()]


def test_bench_extra_measures_onnx_and_tflite_and_skips_torch_files(tiny_run, wheel, tmp_path):
    bin_ = _board_venv(tmp_path / "venv", f"{wheel}[bench]")
    bundle = tiny_run / "bundle"
    proc = _bench(bin_, bundle, tmp_path / "results.jsonl")
    assert proc.returncode == 0, proc.stdout + proc.stderr

    records = _records(tmp_path / "results.jsonl")
    manifest = json.loads((bundle / "manifest.json").read_text())
    parity = {m["file"]: m["parity"]["accuracy"] for m in manifest["models"]}
    measured = sorted(Path(r["file"]).name for r in records)
    assert measured == sorted(p.name for p in bundle.iterdir() if p.suffix in (".onnx", ".tflite"))
    for r in records:
        assert r["latency"]["p50"] > 0 and r["latency"]["count"] >= 5, r["file"]
        # the board's preprocessing of the uint8 test images scores the file as the export check did
        assert r["n_accuracy"] == 300 and abs(r["accuracy"] - parity[Path(r["file"]).name]) <= 1 / 300 + 1e-9
        assert r["backend"] == {"onnx": "onnxruntime", "tflite": "litert"}[r["format"]]
        assert r["machine"]["versions"]["numpy"].startswith("2.")
    pt2 = sorted(bundle.glob("*.pt2"))
    assert len(pt2) == 3
    for path in pt2:  # one line each, naming the file and the runtime it lacks
        lines = [line for line in proc.stderr.splitlines() if path.name in line]
        assert len(lines) == 1 and str(path) in lines[0], proc.stderr
        assert "skipped" in lines[0].lower() and "torch" in lines[0].split(str(path))[1], lines[0]


BAD_INPUT = [
    (["bench", "missing.onnx"], "error: Invalid value for 'path': path 'missing.onnx' does not exist."),
    (["bench", "corrupt.onnx"], "error: corrupt.onnx: benchmark worker exited with 1: "),
    (["report", "no-such-dir"], "error: Invalid value for 'run_dir': dir 'no-such-dir' does not exist."),
    (["bench", "corrupt.onnx", "--suite", "binary.yaml"],
     "error: binary.yaml: not a YAML text file (byte 128 is not UTF-8)"),
    (["sweep", "binary.yaml"], "error: binary.yaml: not a YAML text file (byte 128 is not UTF-8)"),
    (["bench", "loose", "--target", "ssh://root@127.0.0.1:9"],
     "error: loose: no manifest.json, so not a bundle"),
    (["bench", "notes.txt", "--target", "ssh://root@127.0.0.1:9"],
     "error: notes.txt: cannot benchmark a .txt file; expected .onnx, .pte, .tflite or .pt2"),
]  # fmt: skip


def test_bad_input_on_a_board_install_is_one_line_naming_the_path(wheel, tmp_path):
    """With only edgekd[bench] (no torch, no click), a mistake is one line and exit 1, not a traceback."""
    bin_ = _board_venv(tmp_path / "venv", f"{wheel}[bench]")
    (tmp_path / "corrupt.onnx").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "loose").mkdir()
    shutil.copy(tmp_path / "corrupt.onnx", tmp_path / "loose" / "m.onnx")
    (tmp_path / "notes.txt").write_text("not a model\n")
    for args, message in BAD_INPUT:
        proc = _run([bin_ / "edgekd", *args], cwd=tmp_path, check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith(message), (args, proc.stderr)


def _with_newer_op(src: Path, dst: Path) -> Path:
    """Copy of a .tflite file whose CONV_2D claims version 99: what a converter newer than the board makes."""
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    import flatbuffers

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(src.read_bytes(), 0))
    conv = [op for op in model.operatorCodes if op.builtinCode == schema.BuiltinOperator.CONV_2D]
    assert conv, f"{src}: no CONV_2D to bump"
    for op in conv:
        op.version = 99
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    dst.write_bytes(builder.Output())
    return dst


def _tflite_bundle(bundle: Path, dst: Path) -> Path:
    """A bundle with the .tflite files of `bundle` and one file that needs a newer op version."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    entries = [m for m in manifest["models"] if m["format"] == "tflite"]
    shutil.copytree(bundle / "data", dst / "data")
    for m in entries:
        shutil.copy(bundle / m["file"], dst / m["file"])
    src = next(m for m in entries if m["file"] == "student_kd.tflite")
    newer = _with_newer_op(bundle / src["file"], dst / "student_kd_conv_v99.tflite")
    digest = hashlib.sha256(newer.read_bytes()).hexdigest()
    manifest["models"] = [
        *entries,
        dict(
            src, name="student_kd_conv_v99", file=newer.name, sha256=digest, size_bytes=newer.stat().st_size
        ),
    ]
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return dst


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="tflite-runtime 2.14 has wheels only up to 3.11")
def test_tflite_runtime_extra_measures_each_tflite_file_it_can_load(tiny_run, wheel, tmp_path):
    bundle = _tflite_bundle(tiny_run / "bundle", tmp_path / "tflite")
    bin_ = _board_venv(tmp_path / "venv", f"{wheel}[bench-tflite-runtime]")
    # The extra's onnxruntime must run on numpy 1 too: one inference, in that venv.
    onnx_check = (
        "import sys, numpy as np, onnxruntime as ort; s = ort.InferenceSession(sys.argv[1]);"
        "print(np.__version__, *s.run(None, {'input': np.zeros((1, 1, 28, 28), np.float32)})[0].shape)"
    )
    onnx_file = tiny_run / "bundle" / "student_kd.onnx"
    numpy_version, *shape = _run([bin_ / "python", "-c", onnx_check, onnx_file], cwd=tmp_path).stdout.split()
    assert numpy_version.startswith("1.") and shape == ["1", "10"]

    proc = _bench(bin_, bundle, tmp_path / "results.jsonl")
    # tflite-runtime 2.14 loads every fp32, fp16 and full-integer int8 file the exporter writes; it
    # refuses the dynamic-range int8 files (PT2E writes FULLY_CONNECTED version 12) and the file with a
    # newer op version, each on one line of its own, and exits 1 after the others are measured.
    assert proc.returncode == 1, proc.stdout + proc.stderr
    records = _records(tmp_path / "results.jsonl")
    manifest = json.loads((tiny_run / "bundle" / "manifest.json").read_text())
    parity = {m["file"]: m["parity"]["accuracy"] for m in manifest["models"]}
    tflite = sorted(p.name for p in (tiny_run / "bundle").glob("*.tflite"))
    dynamic = [n for n in tflite if n.endswith("_dynamic_int8.tflite")]
    assert len(dynamic) == 2 and any(n.endswith("_fp16.tflite") for n in tflite)
    assert sorted(Path(r["file"]).name for r in records) == [n for n in tflite if n not in dynamic]
    for r in records:
        assert r["backend"] == "tflite_runtime" and r["runtime_version"].startswith("2.14."), r["file"]
        want = parity[Path(r["file"]).name]
        assert r["latency"]["p50"] > 0 and abs(r["accuracy"] - want) <= 1 / 300 + 1e-9, r["file"]
    failed = [line for line in proc.stderr.splitlines() if "student_kd_conv_v99.tflite" in line]
    prefix = f"FAILED {bundle / 'student_kd_conv_v99.tflite'}: "
    assert len(failed) == 1 and failed[0].startswith(prefix) and failed[0].removeprefix(prefix).strip()
    for name in dynamic:
        (line,) = [ln for ln in proc.stderr.splitlines() if name in ln]
        assert line.startswith("FAILED") and "FULLY_CONNECTED" in line and "version '12'" in line, line
    assert f"3 of {len(tflite) + 1}" in proc.stderr.splitlines()[-1], proc.stderr


def test_predict_text_on_a_board_install_gives_the_labels_torch_gives(text_run, wheel, tmp_path):
    """200 sentences through a text bundle in a venv with edgekd[bench] and tokenizers only (no torch, no
    transformers): the same labels as the torch student, from its ONNX and TFLite files (int8 too)."""

    bin_ = _board_venv(tmp_path / "venv", f"{wheel}[bench]", "tokenizers")
    _predict_like_torch(
        bin_, text_run, tmp_path, ("student_kd.onnx", "student_kd.tflite", "student_kd_int8.tflite")
    )


def _predict_like_torch(bin_: Path, text_run: Path, tmp_path: Path, files: tuple[str, ...]) -> None:
    """Each file's labels for 200 sentences: torch's for float files; int8 files agree on >= 97 %."""
    from tests.text_data import torch_labels

    texts, want = torch_labels(text_run, tmp_path / "sentences.csv", n=200, seed=11)
    assert len(texts) == 200 and 0 < sum(want) < 200  # both classes among the torch labels
    for file in files:
        args = [bin_ / "edgekd", "predict", text_run / "bundle", "--file", file, "--json", "--top-k", "1"]
        proc = _run(args + [a for t in texts for a in ("--text", t)], cwd=tmp_path)
        doc = json.loads(proc.stdout)
        assert [p["text"] for p in doc["predictions"]] == texts
        got = [p["top"][0]["index"] for p in doc["predictions"]]
        if "int8" in file:
            assert sum(g == w for g, w in zip(got, want, strict=True)) >= 194, file
        else:
            assert got == want, file


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="tflite-runtime 2.14 has wheels only up to 3.11")
def test_predict_text_with_tflite_runtime_gives_the_labels_torch_gives(text_run, wheel, tmp_path):
    """The text student's fp32 and full-int8 TFLite files (int32 ids in; the int8 one with its lookup
    float) under tflite-runtime 2.14 on numpy 1, the runtime older boards have."""
    bin_ = _board_venv(tmp_path / "venv", f"{wheel}[bench-tflite-runtime]", "tokenizers")
    probe = _run([bin_ / "python", "-c", "import ai_edge_litert"], cwd=tmp_path, check=False)
    assert probe.returncode == 1  # only tflite_runtime can run the .tflite files here
    _predict_like_torch(bin_, text_run, tmp_path, ("student_kd.tflite", "student_kd_int8.tflite"))


def _png(path: Path, side: int = 28) -> Path:
    """A grey PNG written with the standard library (the venv under test has no Pillow)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80" * side for _ in range(side))
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) +
                     chunk(b"IEND", b""))  # fmt: skip
    return path


def test_commands_needing_another_extra_name_it_in_one_line(tiny_run, wheel, tmp_path):
    """On a board install (`edgekd[bench]`), each PC command stops with one line naming the missing
    package and the extra that brings it (benchmarks.extras), exit 1, no traceback."""
    from tests.conftest import TINY

    bin_ = _board_venv(tmp_path / "venv", f"{wheel}[bench]")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"base: {TINY}\nspace: {{distill.alpha: [0.1, 0.2]}}\n")
    onnx, bundle = tiny_run / "bundle" / "student_kd.onnx", tiny_run / "bundle"
    cases = [
        (["run", TINY, "--out", tmp_path / "r"], "torch", "distill"),
        (["distill", TINY, "--out", tmp_path / "r"], "torch", "distill"),
        (["train-teacher", TINY, "--out", tmp_path / "r"], "torch", "distill"),
        (["sweep", sweep, "--out", tmp_path / "s"], "torch", "distill"),
        (["export", "--from", onnx, "--out", tmp_path / "e"], "onnx", "export"),
        (["bench", onnx, "--target", "ssh://root@127.0.0.1:9"], "asyncssh", "remote"),
        (["bench", bundle, "--target", "ssh://root@127.0.0.1:9"], "asyncssh", "remote"),
        (["predict", bundle, _png(tmp_path / "photo.png")], "Pillow", "predict"),
    ]
    for args, package, extra in cases:
        proc = _run([bin_ / "edgekd", *args], cwd=tmp_path, check=False)
        lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, (args, proc.stderr[-2000:])
        assert lines == [f"error: {package} is not installed; this command needs it: pip install "
                         f"'edgekd[{extra}]'"], (args, lines)  # fmt: skip
    assert not (tmp_path / "r").exists() and not (tmp_path / "e").exists()
