"""Shared fixtures: small IDX data sets written by the tests themselves, and one tiny pipeline run."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from benchmarks.manifest import LayoutSearch

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory) -> None:
    """Recorded int8-layout decisions go to a cache of this test session, not the user's ~/.cache/edgekd."""
    import os

    os.environ["EDGEKD_CACHE"] = str(tmp_path_factory.mktemp("edgekd-cache"))


TINY = Path(__file__).parent / "configs" / "tiny.yaml"


def write_idx(path: Path, arr: np.ndarray, *, gz: bool = True) -> Path:
    """Write `arr` (uint8) in the IDX format MNIST uses."""
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture
def idx_folder(tmp_path: Path) -> Path:
    """A tiny MNIST-style folder: 60 train / 20 test 8x8 images over 3 classes, class = brightest quadrant."""
    rng = np.random.default_rng(0)

    def make(n):
        y = rng.integers(0, 3, n).astype(np.uint8)
        x = rng.integers(0, 40, (n, 8, 8)).astype(np.uint8)
        for i, c in enumerate(y):
            x[i, (c // 2) * 4 : (c // 2) * 4 + 4, (c % 2) * 4 : (c % 2) * 4 + 4] += 200
        return x, y

    root = tmp_path / "idx"
    root.mkdir()
    for split, n in (("train", 60), ("t10k", 20)):
        x, y = make(n)
        write_idx(root / f"{split}-images-idx3-ubyte.gz", x)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", y)
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The whole pipeline on tests/configs/tiny.yaml through the CLI (~1 min), run once per session."""
    pytest.importorskip("torch")
    if not FASHION_MNIST.is_dir():
        pytest.skip("dataset-fashion-mnist not installed (make data)")
    from typer.testing import CliRunner

    from toolkit.cli.main import app

    out = tmp_path_factory.mktemp("run") / "tiny"
    result = CliRunner().invoke(app, ["run", str(TINY), "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out


def onnx_classifier(path: Path, weight: np.ndarray, side: int) -> Path:
    """A Flatten+MatMul ONNX classifier with dynamic batch, built with onnx's helper API."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "weight"], ["output"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, side, side])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", weight.shape[1]])],
        initializer=[numpy_helper.from_array(weight, "weight")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def fitted_student(*, seed: int = 0, noise: float = 0.5, n: int = 512):
    """cnn_student with random conv/BN weights and a least-squares head on a 10-class template task: a
    model with clear, varied predictions in a second instead of a training run."""
    import torch

    from toolkit.models import ModelSpec, create_model

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    templates = rng.standard_normal((10, 1, 28, 28)).astype(np.float32)
    model = create_model(ModelSpec(arch="cnn_student", labels=tuple(str(i) for i in range(10)))).eval()
    with torch.no_grad():
        for m in model.modules():  # non-trivial BN statistics, so the exported convs carry biases
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.1, 0.1)
    y = rng.integers(0, 10, 2 * n)
    x = (templates[y] + noise * rng.standard_normal((2 * n, 1, 28, 28))).astype(np.float32)
    with torch.no_grad():
        feats = model.pool(model.forward_features(torch.from_numpy(x[:n]))).numpy()
        a = np.c_[feats, np.ones(n)]  # ridge: dead ReLU channels make the plain system singular
        w = np.linalg.solve(a.T @ a + 0.01 * np.eye(a.shape[1]), a.T @ (10 * np.eye(10)[y[:n]]))
        model.head[0].weight.copy_(torch.from_numpy(w[:-1].T.astype(np.float32)))
        model.head[0].bias.copy_(torch.from_numpy(w[-1].astype(np.float32)))
    return model, x[n:], y[n:]


def edgekd_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """`edgekd ARGS` in this process through `main()` (its real error path): (exit code, stderr)."""
    import sys

    from toolkit.cli.main import _state, main

    monkeypatch.setattr(sys, "argv", ["edgekd", *map(str, args)])
    monkeypatch.setitem(_state, "debug", False)
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    return code, capsys.readouterr().err


@pytest.fixture(scope="session")
def package_index() -> None:
    """Skip, naming why, when pip cannot reach a package index: the board venvs install from one."""
    import subprocess
    import sys

    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "index", "versions", "ai-edge-litert"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("no package index answered `pip index versions ai-edge-litert` within 120 s")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"no package index answers (pip index versions ai-edge-litert: {last})")


def manifest_dict(bundle: Path | None, models: list[dict], **top) -> dict:
    """A complete manifest around hand-made `models`; missing fields filled in (checksums of real files)."""
    from export._files import sha256_file

    parity = {"n": 1, "max_abs_diff": 0.0, "mean_abs_diff": 0.0, "top1_agreement": 1.0, "accuracy": 1.0}
    full = []
    for m in models:
        path = bundle / m["file"] if bundle is not None else None
        exists = path is not None and path.is_file()
        full.append(
            {
                "role": "teacher" if m["name"] == "teacher" else "student",
                "size_bytes": path.stat().st_size if exists else 1,
                "sha256": sha256_file(path) if exists else "0" * 64,
                "parity": {**parity, "passed": True},
                **m,
            }
        )
    return {
        "manifest_version": 1,
        "created": "2026-12-01T00:00:00+00:00",
        "input": {
            "name": "input",
            "shape": [None, 1, 28, 28],
            "dtype": "float32",
            "layout": "NCHW",
            "preprocessing": {"scale": 1 / 255, "mean": [0.0], "std": [1.0]},
        },
        "labels": [],
        "test_data": None,
        "models": full,
        "failures": [],
        "versions": {},
        **top,
    }


def write_manifest_for(bundle: Path, models: list[dict], **top) -> Path:
    """Write `bundle/manifest.json` through the typed definition, as export would."""
    from benchmarks.manifest import parse_manifest

    path = bundle / "manifest.json"
    return parse_manifest(manifest_dict(bundle, models, **top), where=path).write(path)


from tests.text_data import text_run  # noqa: E402, F401  (one text run per session, shared by modules)


def assert_kept_the_fastest_passing(search: LayoutSearch) -> None:
    """Among the passing layouts within the margin of the fastest: the default, else the first in preference
    order (noise between near-equal layouts does not pick)."""
    passed = {t.layout: t.p50_us for t in search.tried if t.passed}
    fastest = min(passed.values())
    near = [k for k in search.preference if k in passed and passed[k] <= fastest * (1 + search.margin)]
    kept = search.default if search.default in near else near[0]
    assert search.kept == kept and search.fp32_p50_us > 0 and search.margin == 0.05
    assert search.faster_than_fp32 == (passed[kept] < search.fp32_p50_us)
