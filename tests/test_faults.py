"""Faults around a benchmark (issue #19): hostile bundle archives, workers that crash or hang, a full disk.

Everything here is real: archives built with tarfile, worker processes that really die or sleep, and a
tmpfs that really fills up. Bad-input helpers come from tests/test_bad_input.py.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from benchmarks.bundle import run_suite
from benchmarks.records import read_records
from benchmarks.suite import Suite, load_suite
from tests.conftest import edgekd_main, onnx_classifier, write_manifest_for
from tests.test_bad_input import FAST, _bundle, _error_line, _files, _good_onnx
from toolkit.errors import EdgekdError

# --- bundle archives given to `edgekd bench` -------------------------------------------------------------


@pytest.fixture
def scratch(monkeypatch, tmp_path) -> Path:
    """The folder temporary folders go to, so a test can see what extraction leaves behind."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _tar(dst: Path, bundle: Path, *, top: str | None = "bundle") -> Path:
    """`bundle`'s files in a .tar.gz, under the folder `top` (None: at the archive's top)."""
    with tarfile.open(dst, "w:gz") as tar:
        for path in sorted(bundle.rglob("*")):
            rel = path.relative_to(bundle)
            tar.add(path, arcname=str(Path(top) / rel if top else rel))
    return dst


@pytest.mark.parametrize("made_by", ["export", "tarfile-flat-tgz"])
def test_bundle_archive_benchmarks_like_its_folder(monkeypatch, capsys, tmp_path, scratch, made_by):
    from export.bundle import write_archive

    bundle = _bundle(tmp_path / "bundle")
    archive = write_archive(bundle) if made_by == "export" else _tar(tmp_path / "b.tgz", bundle, top=None)
    results = tmp_path / "out" / "r.jsonl"
    code, err = edgekd_main(monkeypatch, capsys, "bench", archive, "--results", results, *FAST)
    assert code == 0, err
    (record,) = read_records(results)
    assert (record.model, record.format, Path(record.file).name) == ("student_kd", "onnx", "student_kd.onnx")
    assert f"measured from the bundle archive {archive}, extracted to a temporary folder" in record.notes
    assert not Path(record.file).exists()  # the extracted copy is gone ...
    assert list(scratch.iterdir()) == []  # ... and so is everything else extracted


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 3  # /dev/null
    return info


def _hostile(dst: Path, bundle: Path, member: tarfile.TarInfo) -> Path:
    """A good bundle archive with one hostile `member` added after the bundle's own files."""
    _tar(dst, bundle)
    with tarfile.open(dst, "r:gz") as src:
        members = [(m, src.extractfile(m).read() if m.isfile() else None) for m in src.getmembers()]
    payload = b"written where it should not be\n"
    with tarfile.open(dst, "w:gz") as tar:
        for m, data in [*members, (member, payload)]:
            if m.isfile():
                m.size = len(data)
                tar.addfile(m, io.BytesIO(data))
            else:
                tar.addfile(m)
    return dst


# (case, member to add given tmp_path, message after "ARCHIVE: refused member ")
HOSTILE = [
    ("absolute-path", lambda t: _member(str(t / "abs-escape")), "{t}/abs-escape: has an absolute path"),
    ("dot-dot", lambda t: _member("../escape"), "../escape: would be written outside the bundle folder"),
    (
        "dot-dot-inside-name",
        lambda t: _member("bundle/../../escape"),
        "bundle/../../escape: would be written outside the bundle folder",
    ),
    (
        "symlink-to-etc-passwd",
        lambda t: _member("bundle/passwd", tarfile.SYMTYPE, "/etc/passwd"),
        "bundle/passwd: links to the absolute path /etc/passwd",
    ),
    (
        "symlink-up-and-out",
        lambda t: _member("bundle/up", tarfile.SYMTYPE, "../../outside.txt"),
        "bundle/up: links to ../../outside.txt, outside the bundle folder",
    ),
    (
        "hardlink-outside",
        lambda t: _member("bundle/hard", tarfile.LNKTYPE, "../outside.txt"),
        "bundle/hard: links to ../outside.txt, outside the bundle folder",
    ),
    (
        "hardlink-to-etc-passwd",
        lambda t: _member("bundle/hard", tarfile.LNKTYPE, "/etc/passwd"),
        "bundle/hard: links to the absolute path /etc/passwd",
    ),
    (
        "char-device",
        lambda t: _member("bundle/null", tarfile.CHRTYPE),
        "bundle/null: is a device or FIFO, not a regular file",
    ),
    (
        "fifo",
        lambda t: _member("bundle/pipe", tarfile.FIFOTYPE),
        "bundle/pipe: is a device or FIFO, not a regular file",
    ),
    (
        "line-break-in-name",
        lambda t: _member("bundle/a\n/../../../b"),
        "'bundle/a\\n/../../../b': would be written outside the bundle folder",
    ),
]


@pytest.mark.parametrize("make, fault", [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_archive_is_refused_in_one_line(monkeypatch, capsys, tmp_path, scratch, make, fault):
    bundle = _bundle(tmp_path / "bundle")
    archive = _hostile(tmp_path / "evil.tar.gz", bundle, make(tmp_path))
    secret = scratch / "outside.txt"  # what the links aim at, one and two levels above the extraction
    secret.write_text("secret\n")
    before = _files(tmp_path)
    results = tmp_path / "out" / "r.jsonl"
    message = _error_line(monkeypatch, capsys, "bench", archive, "--results", results, *FAST)
    assert message == f"{archive}: refused member " + fault.format(t=tmp_path)
    assert _files(tmp_path) == before  # no escape target, no results, nothing extracted left behind
    assert not (tmp_path / "abs-escape").exists() and not (scratch / "escape").exists()
    assert secret.read_text() == "secret\n" and secret.stat().st_nlink == 1
    assert [p.name for p in scratch.iterdir()] == ["outside.txt"]


def _truncated(tmp_path: Path) -> Path:
    good = _tar(tmp_path / "good.tar.gz", _bundle(tmp_path / "bundle")).read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(good[: len(good) // 2])
    return tmp_path / "cut.tar.gz"


def _no_manifest(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    _good_onnx(folder / "m.onnx")
    return _tar(tmp_path / "models.tar.gz", folder, top="models")


def _not_gzip(tmp_path: Path) -> Path:
    (tmp_path / "text.tar.gz").write_text("not an archive\n")
    return tmp_path / "text.tar.gz"


@pytest.mark.parametrize(
    "make, fault",
    [
        (_truncated, r"not a readable \.tar\.gz bundle archive \(.+\)"),
        (_not_gzip, r"not a readable \.tar\.gz bundle archive \(.+\)"),
        (
            _no_manifest,
            re.escape(
                "no manifest.json at its top or in its one top folder (is it an edgekd bundle archive?)"
            ),
        ),
    ],
    ids=["truncated", "not-gzip", "no-manifest"],
)
def test_unusable_archive_is_one_line(monkeypatch, capsys, tmp_path, scratch, make, fault):
    archive = make(tmp_path)
    message = _error_line(monkeypatch, capsys, "bench", archive, "--results", tmp_path / "out" / "r.jsonl")
    assert re.fullmatch(f"{re.escape(str(archive))}: {fault}", message), message
    assert list(scratch.iterdir()) == [] and not (tmp_path / "out").exists()


def test_archive_on_a_python_without_extraction_filters(monkeypatch, capsys, tmp_path, scratch):
    """Before 3.10.12 / 3.11.4 tarfile cannot refuse hostile members: no extraction at all, then."""
    archive = _tar(tmp_path / "b.tar.gz", _bundle(tmp_path / "bundle"))
    monkeypatch.delattr(tarfile, "data_filter")
    message = _error_line(monkeypatch, capsys, "bench", archive, "--results", tmp_path / "r.jsonl")
    version = sys.version.split()[0]
    assert message == (
        f"{archive}: Python {version} cannot extract archives safely (3.10.12+, 3.11.4+ and 3.12+ can); "
        "extract it with `tar xzf` and benchmark the folder"
    )
    assert list(scratch.iterdir()) == []


# --- benchmark workers that crash or hang ----------------------------------------------------------------

# Stands in for the Python interpreter the harness starts as `PYTHON -m benchmarks.worker`: on crash.onnx
# it dies of SIGSEGV, on hang.onnx it starts a child that holds its pipes and both sleep; on any other
# file it runs the real worker with the same stdin.
STAND_IN = """#!{python}
import faulthandler, json, os, resource, signal, subprocess, sys, time

text = sys.stdin.read()
name = os.path.basename(json.loads(text)["model_path"])
if name == "crash.onnx":
    faulthandler.disable()  # a plain segfault: no traceback on stderr
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # and no core file
    os.kill(os.getpid(), signal.SIGSEGV)
if name == "hang.onnx":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with open({pids!r}, "a") as f:
        f.write(f"{{os.getpid()}} {{child.pid}}\\n")
    time.sleep(120)
read, write = os.pipe()
os.write(write, text.encode())
os.close(write)
os.dup2(read, 0)
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""


def _stand_in(tmp_path: Path) -> tuple[Path, Path]:
    """(executable stand-in for python, file it writes the hung pids to)."""
    script, pids = tmp_path / "python-stand-in", tmp_path / "hung.pids"
    script.write_text(STAND_IN.format(python=sys.executable, pids=str(pids)))
    script.chmod(0o755)
    return script, pids


def _gone(pid: int) -> bool:
    """Whether `pid` is dead (a zombie waiting for its parent to reap it counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _three_file_bundle(root: Path) -> Path:
    """A bundle of student_kd.onnx (good), crash.onnx and hang.onnx: the same tiny model three times."""
    root.mkdir(parents=True)
    for name in ("student_kd", "crash", "hang"):
        _good_onnx(root / f"{name}.onnx")
    spec = {"name": "input", "shape": [None, 1, 4, 4], "dtype": "float32", "layout": "NCHW"}
    spec["preprocessing"] = {"scale": 1 / 255, "mean": [0.0], "std": [1.0]}
    models = [
        {"name": n, "file": f"{n}.onnx", "format": "onnx", "precision": "fp32"}
        for n in ("student_kd", "crash", "hang")
    ]
    write_manifest_for(root, models, input=spec)
    return root


TIMEOUT_S = 2.0  # the good worker (python + numpy + onnxruntime) starts well within it


def test_crashing_and_hanging_workers_fail_alone(tmp_path):
    bundle = _three_file_bundle(tmp_path / "bundle")
    python, pids = _stand_in(tmp_path)
    suite = Suite(name="faults", warmup=1, min_runs=2, min_time_s=0.0, repeats=2, timeout_s=TIMEOUT_S)
    results = tmp_path / "r.jsonl"
    start = time.monotonic()
    done = run_suite(bundle, results, suite, python=str(python))
    elapsed = time.monotonic() - start

    crash, hang = str(bundle / "crash.onnx"), str(bundle / "hang.onnx")
    assert sorted(done.errors) == sorted(
        [
            f"{crash}: benchmark worker exited with -11 (SIGSEGV): no error output",
            f"{hang}: benchmark did not finish within 2 s; worker killed",
        ]
    )  # once each: a configuration that failed is not tried again in the second round
    assert sorted(done.failed_files) == sorted([crash, hang]) and done.n_files == 3
    records = read_records(results)
    assert [(r.model, r.round) for r in sorted(records, key=lambda r: r.round)] == [
        ("student_kd", 0),
        ("student_kd", 1),
    ]
    assert records == done.records
    # The hung worker and the child it started were killed, not left running or waited for.
    (line,) = pids.read_text().splitlines()
    assert all(_gone(int(pid)) for pid in line.split()), line
    assert elapsed < 60  # not the 120 s the hung processes would sleep


def test_timeout_is_a_suite_setting(tmp_path):
    (tmp_path / "s.yaml").write_text("timeout_s: 90\n")
    assert load_suite(tmp_path / "s.yaml").timeout_s == 90.0
    assert Suite().timeout_s == 600.0


@pytest.mark.parametrize("value", ["0", "-1", "true", "fast", ".nan", ".inf"])
def test_bad_suite_timeout_is_one_line(monkeypatch, capsys, tmp_path, value):
    suite = tmp_path / "s.yaml"
    suite.write_text(f"timeout_s: {value}\n")
    bundle = _bundle(tmp_path / "bundle")
    message = _error_line(monkeypatch, capsys, "bench", bundle, "--suite", suite, "--results", tmp_path / "r")
    assert re.fullmatch(
        rf"{re.escape(str(suite))}: timeout_s: expected a number of seconds > 0, got .+", message
    )


@pytest.mark.parametrize("value", ["0", "-2", "inf"])
def test_bad_timeout_option_is_one_line(monkeypatch, capsys, tmp_path, value):
    bundle = _bundle(tmp_path / "bundle")
    message = _error_line(
        monkeypatch, capsys, "bench", bundle, "--timeout", value, "--results", tmp_path / "r"
    )
    assert message == f"--timeout: expected seconds > 0, got {float(value):g}"
    assert not (tmp_path / "r").exists()


def test_timeout_option_reaches_the_worker(monkeypatch, capsys, tmp_path):
    """`--timeout` kills a real worker that runs longer: a file of many timed runs, a tiny timeout."""
    bundle = _bundle(tmp_path / "bundle")
    results = tmp_path / "r.jsonl"
    args = ["--min-runs", "2", "--min-time", "30", "--repeats", "1", "--timeout", "0.5"]
    message = _error_line(monkeypatch, capsys, "bench", bundle, "--results", results, *args)
    assert message == f"{bundle / 'student_kd.onnx'}: benchmark did not finish within 0.5 s; worker killed"
    assert not results.exists()


# --- a disk that fills up while the bundle is written ----------------------------------------------------


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 200 KiB tmpfs: room for a small bundle but not for its archive too. Mounting needs root, which
    CI has; without it the test fails, saying so, rather than skip and pass unnoticed."""
    folder = tmp_path / "small"
    folder.mkdir()
    cmd = ["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(folder)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"cannot mount a 200k tmpfs for the disk-full tests (needs root): {proc.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def _fill(folder: Path) -> None:
    """Write zeros into `folder` until its file system is full."""
    with open(folder / "filler", "wb", buffering=0) as f:
        with pytest.raises(OSError) as err:
            while True:
                f.write(bytes(4096))
    assert err.value.errno == errno.ENOSPC


def test_disk_full_while_writing_the_archive(monkeypatch, capsys, tmp_path, small_disk):
    weight = np.random.default_rng(0).standard_normal((256, 120)).astype(np.float32)  # 120 KiB, no gzip gain
    src = onnx_classifier(tmp_path / "m.onnx", weight, side=16)
    out = small_disk / "out"
    code, err = edgekd_main(monkeypatch, capsys, "export", "--from", src, "--out", out)
    lines = err.splitlines()  # the progress line of the file written, then the one error line
    assert code == 1 and "Traceback" not in err and lines[0].startswith("exported m.onnx"), err
    expected = f"error: {out / 'bundle.tar.gz'}: cannot write the bundle archive (No space left on device)"
    assert lines[1:] == [expected], err
    # The bundle itself is whole (its manifest was written); no archive, whole or partial, is left.
    assert {str(p.relative_to(out)) for p in _files(out)} == {"bundle/m.onnx", "bundle/manifest.json"}


def test_disk_full_while_writing_the_manifest(tmp_path, small_disk):
    from benchmarks.manifest import InputSpec, ModelEntry
    from export.bundle import write_manifest

    bundle = _bundle(small_disk / "bundle")
    data = json.loads((bundle / "manifest.json").read_text())
    (bundle / "manifest.json").unlink()
    _fill(small_disk)
    with pytest.raises(EdgekdError) as err:
        write_manifest(
            bundle,
            models=[ModelEntry.model_validate(m) for m in data["models"]],
            input_spec=InputSpec.model_validate(data["input"]),
            labels=[],
            test_data=None,
            failures=[],
        )
    assert (
        str(err.value) == f"{bundle / 'manifest.json'}: cannot write the manifest (No space left on device)"
    )
    assert [p.name for p in bundle.iterdir()] == ["student_kd.onnx"]  # no manifest, no partial one
