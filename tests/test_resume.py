"""SIGKILL at a random point of each stage, then `edgekd run --resume` (issue #19): finished work is kept,
and the files that are deterministic are byte-identical to an uninterrupted run with the same seed.

Deterministic, compared by sha256: every ONNX and TFLite file, the bundle's test data. Compared by
content: the checkpoints' weights (each checkpoint also holds its measured training seconds), the bundle's
entries. Not deterministic, by design: manifest.json (`created`), bundle.tar.gz (holds the manifest), the
summary and metrics (seconds), `.pt2` files (torch writes a random serialization id), and every benchmark
record and the report built on them (measurements).
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import FASHION_MNIST

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist not installed (make data)"),
]
torch = pytest.importorskip("torch")

CONFIG = {
    "seed": 0,
    "data": {"root": str(FASHION_MNIST), "val_size": 200, "limit_train": 300, "limit_test": 200},
    "teacher": {"arch": "cnn_teacher", "epochs": 1, "batch_size": 64},
    "student": {"arch": "cnn_student", "epochs": 2, "batch_size": 64},
    "export": {
        "formats": ["onnx", "tflite"],
        "precisions": ["fp32", "int8", "dynamic-int8"],
        "teacher_precisions": ["fp32", "int8"],
        "scratch_precisions": ["fp32"],
        "calibration_samples": 32,
        "sensitivity": False,
        # A layout kept because it timed fastest may differ between two runs; this test is about resuming.
        "onnx_int8_search": False,
        "tflite_int8_search": False,
    },
    "bench": {"warmup": 2, "min_runs": 10, "min_time_s": 0.01, "repeats": 2},
}
N_FILES = 2 * 3 + 2 * 2 + 2  # KD student: 3 precisions, teacher 2, scratch 1; ONNX and TFLite each


def _run(config: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "toolkit.cli.main", "run", str(config), "--out", str(out), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _lines(path: Path) -> int:
    return path.read_text().count("\n") if path.is_file() else 0


def _model_files(bundle: Path) -> int:
    return len([p for p in bundle.glob("*") if p.suffix in (".onnx", ".tflite")]) if bundle.is_dir() else 0


def _trigger(stage: str, rng: random.Random):
    """A condition on the run directory that holds at a random point inside `stage`."""
    if stage == "distill":
        model, epochs = rng.choice([("teacher", 0), ("student_kd", 1), ("student_scratch", 1)])
        if epochs == 0:  # mid-way through the teacher's only epoch: kill after a random delay
            start = []
            return lambda run: (
                (start.append(time.monotonic()) or True)
                and (time.monotonic() - start[0] > rng.uniform(0.2, 1.5))
            )
        return lambda run: _lines(run / "distill" / f"{model}_metrics.jsonl") >= epochs
    if stage == "export":
        k = rng.randint(1, N_FILES - 1)
        return lambda run: _model_files(run / "bundle") >= k
    if stage == "bench":
        k = rng.randint(1, 2 * N_FILES - 1)
        return lambda run: _lines(run / "bench" / "results.jsonl") >= k
    return lambda run: (run / "report").is_dir()


def _kill_when(proc: subprocess.Popen, run: Path, trigger, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not trigger(run):
        assert proc.poll() is None, f"the run ended before the kill point: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _deterministic(run: Path) -> dict[str, str]:
    files = [p for p in (run / "bundle").glob("*") if p.suffix in (".onnx", ".tflite")]
    return {p.name: _sha(p) for p in [*files, run / "bundle" / "data" / "test.npz"]}


def _entries(run: Path) -> dict:
    models = json.loads((run / "bundle" / "manifest.json").read_text())["models"]
    # not source_checkpoint_sha256: a checkpoint also holds its measured training seconds
    return {m["file"]: (m["sha256"], m["size_bytes"], m["parity"]["passed"]) for m in models}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    """The config and one uninterrupted run of it."""
    root = tmp_path_factory.mktemp("resume")
    config = root / "c.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    proc = _run(config, root / "whole")
    assert proc.wait(timeout=900) == 0, proc.stderr.read()
    return config, root / "whole"


@pytest.mark.parametrize("stage", ["distill", "export", "bench", "report"])
def test_kill_in_a_stage_then_resume_gives_the_same_files(reference, tmp_path, stage):
    config, whole = reference
    seed = int(hashlib.sha256(stage.encode()).hexdigest(), 16) % 1000
    run = tmp_path / "cut"
    _kill_when(_run(config, run), run, _trigger(stage, random.Random(seed)))
    proc = _run(config, run, "--resume")
    assert proc.wait(timeout=900) == 0, proc.stderr.read()
    # the deterministic files: byte for byte
    expected = _deterministic(whole)
    assert len(expected) == N_FILES + 1
    assert _deterministic(run) == expected, f"seed {seed}"
    # the checkpoints: the same weights
    for name in ("teacher", "student_kd", "student_scratch"):
        a = torch.load(whole / "distill" / f"{name}.pt", weights_only=True)["state_dict"]
        b = torch.load(run / "distill" / f"{name}.pt", weights_only=True)["state_dict"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name

    # the manifest: the same files with the same checksums and parity; the journal lists each of them
    assert _entries(run) == _entries(whole)
    journal = [
        json.loads(line) for line in (run / "bundle" / ".export-journal.jsonl").read_text().splitlines()
    ]
    assert {j["entry"]["file"] for j in journal} == set(_entries(whole))  # kept, outside the archive
    # the benchmarks: every configuration and round measured exactly once, nothing lost
    records = [json.loads(line) for line in (run / "bench" / "results.jsonl").read_text().splitlines()]
    keys = [(r["model"], r["format"], r["precision"], r["backend"], r["round"]) for r in records]
    assert len(keys) == len(set(keys)) == 2 * N_FILES
    assert (run / "report" / "report.md").is_file() and (run / "bundle.tar.gz").is_file()


def test_resume_does_not_reuse_work_made_with_other_settings(tmp_path):
    """A checkpoint, an exported file or a logits cache made under other settings is never taken as done."""
    from benchmarks.manifest import read_manifest
    from export.bundle import finished_entries, record_entry
    from tests.test_bad_input import _bundle
    from toolkit.config import RunConfig
    from toolkit.distill.fit import _fingerprint

    cfg = RunConfig.model_validate(CONFIG)
    other = RunConfig.model_validate({**CONFIG, "distill": {"temperature": 9.0}})
    same = _fingerprint(cfg, cfg.student, 0, ("kd",))
    assert same == _fingerprint(RunConfig.model_validate(CONFIG), cfg.student, 0, ("kd",))
    assert same != _fingerprint(other, other.student, 0, ("kd",))  # the KD student depends on T
    assert _fingerprint(cfg, cfg.student, 0, ()) == _fingerprint(other, other.student, 0, ())  # scratch: no
    bundle = _bundle(tmp_path / "b")
    entry = read_manifest(bundle).models[0]
    record_entry(bundle, entry, "settings-a")
    assert set(finished_entries(bundle, "settings-a")) == {("student_kd", "onnx", "fp32")}
    assert finished_entries(bundle, "settings-b") == {}  # other export settings: exported again
    (bundle / "student_kd.onnx").write_bytes(b"changed")
    assert finished_entries(bundle, "settings-a") == {}  # bytes changed since: exported again
