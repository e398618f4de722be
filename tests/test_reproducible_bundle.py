"""The same checkpoints give the same bundle on the same machine (issue #46): two exports, with every int8
layout search forced on, write byte-identical files, manifest and `bundle.tar.gz`; the `.pt2` archive and
the tarball name their contents after the final file and carry one fixed date."""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from toolkit.cli.main import app

pytestmark = pytest.mark.slow


def _export(run: Path) -> dict[str, str]:
    result = CliRunner().invoke(app, ["export", str(run)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    files = [p for p in run.joinpath("bundle").rglob("*") if p.is_file()] + [run / "bundle.tar.gz"]
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def two_exports(tiny_run, tmp_path_factory) -> tuple[Path, dict[str, str], dict[str, str]]:
    """tiny_run's checkpoints exported twice with the ONNX and TFLite int8 layout searches forced on."""
    run = tmp_path_factory.mktemp("repeat") / "run"
    shutil.copytree(tiny_run / "distill", run / "distill")
    cfg = yaml.safe_load((tiny_run / "config.yaml").read_text())
    cfg["export"].update(
        precisions=["fp32", "int8"],
        teacher_precisions=["fp32", "int8"],
        sensitivity=False,
        onnx_int8_search=True,
        tflite_int8_search=True,
    )
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    first = _export(run)
    shutil.move(run / "bundle", run / "first")
    shutil.move(run / "bundle.tar.gz", run / "first.tar.gz")
    return run, first, _export(run)


def test_two_exports_of_one_checkpoint_are_byte_identical(two_exports):
    run, first, second = two_exports
    assert {"bundle/manifest.json", "bundle/teacher.pt2", "bundle.tar.gz"} <= set(first)
    assert {n.rsplit(".", 1)[-1] for n in first if "_int8." in n} == {"onnx", "tflite"}
    assert second.keys() == first.keys()
    assert [name for name in first if first[name] != second[name]] == []
    manifest = yaml.safe_load((run / "bundle" / "manifest.json").read_text())
    searched = [m for m in manifest["models"] if (m.get("quantization") or {}).get("layout_search")]
    assert {m["format"] for m in searched} == {"onnx", "tflite"}  # the search ran, and still repeats


def test_archives_name_their_contents_after_the_final_file_with_one_date(two_exports):
    run, _, _ = two_exports
    roots = {name.split("/", 1)[0] for name in zipfile.ZipFile(run / "bundle" / "teacher.pt2").namelist()}
    assert roots == {"teacher"}
    manifest = yaml.safe_load((run / "bundle" / "manifest.json").read_text())
    with tarfile.open(run / "bundle.tar.gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.mode) for m in members} == {
        (int(datetime.fromisoformat(manifest["created"]).timestamp()), 0, 0, "", 0o644)
    }
    # the bundle's date is its newest checkpoint's, not the export's
    newest = max(int(p.stat().st_mtime) for p in (run / "distill").glob("*.pt") if ".train" not in p.name)
    assert members[0].mtime == newest
