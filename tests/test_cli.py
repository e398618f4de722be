"""The CLI: help with worked examples, and one-line errors with a non-zero exit."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from toolkit.cli.main import app

runner = CliRunner()


@pytest.mark.parametrize("cmd", [[], ["run"], ["distill"], ["export"], ["bench"], ["report"]])
def test_help_shows_an_example(cmd):
    r = runner.invoke(app, [*cmd, "--help"])
    assert r.exit_code == 0
    assert "Example" in r.output and "edgekd" in r.output


def _edgekd(*args):
    return subprocess.run([sys.executable, "-m", "toolkit.cli.main", *args], capture_output=True, text=True)


def test_bad_config_is_one_line_and_exit_1(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("distill: {alpha: 2}\n")
    r = _edgekd("distill", str(cfg), "--out", str(tmp_path / "run"))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {cfg}: distill.alpha")


def test_stage_without_its_inputs_names_the_missing_file(tmp_path):
    r = _edgekd("export", str(tmp_path))
    assert r.returncode == 1
    assert (
        r.stderr.strip()
        == f"error: {tmp_path / 'config.yaml'}: not found; run `edgekd distill` on {tmp_path} first"
    )


def test_bench_on_a_folder_without_manifest(tmp_path):
    r = _edgekd("bench", str(tmp_path))
    assert r.returncode == 1 and "manifest.json: not found" in r.stderr
    assert "Traceback" not in r.stderr
