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


@pytest.mark.parametrize(
    "args,message",
    [
        (["bench", "missing.onnx"], "error: Invalid value for 'path': path 'missing.onnx' does not exist."),
        (["report", "no-such-dir"], "error: Invalid value for 'run_dir': dir 'no-such-dir' does not exist."),
        (["export", "--from", "x.onnx"], "error: Invalid value for '--from': path 'x.onnx' does not exist."),
        (["bench"], "error: Missing argument 'path'."),
        (["no-such-command"], "error: No such command 'no-such-command'."),
    ],
)
def test_usage_error_is_one_line_and_exit_1(tmp_path, args, message):
    r = subprocess.run(
        [sys.executable, "-m", "toolkit.cli.main", *args], capture_output=True, text=True, cwd=tmp_path
    )
    assert (r.returncode, r.stderr.strip()) == (1, message)


def test_bench_of_one_unreadable_file_is_one_line(tmp_path):
    (tmp_path / "corrupt.onnx").write_bytes(bytes(range(256)) * 4)
    r = subprocess.run(
        [sys.executable, "-m", "toolkit.cli.main", "bench", "corrupt.onnx"], capture_output=True, text=True,
        cwd=tmp_path,
    )  # fmt: skip
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert (
        lines[0].startswith("error: corrupt.onnx: benchmark worker exited with 1: ")
        and "INVALID_PROTOBUF" in lines[0]
    )
    assert not (tmp_path / "results.jsonl").exists()


def test_bare_edgekd_prints_help_and_exits_0():
    r = _edgekd()
    assert r.returncode == 0 and r.stdout.startswith("Usage: ") and "edgekd run --out" in r.stdout


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


def test_bench_keeps_measuring_past_a_broken_file_and_exits_1(tmp_path):
    import json

    import numpy as np

    from tests.conftest import manifest_dict, onnx_classifier, write_manifest_for

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    onnx_classifier(bundle / "good.onnx", np.eye(16, 3, dtype=np.float32), side=4)
    (bundle / "broken.onnx").write_bytes(b"not an onnx file")
    models = [
        {"name": n, "role": "student", "file": f"{n}.onnx", "format": "onnx", "precision": "fp32"}
        for n in ("broken", "good")
    ]
    write_manifest_for(bundle, models, input=dict(manifest_dict(None, [])["input"], shape=[None, 1, 4, 4]))
    results = tmp_path / "results.jsonl"
    r = _edgekd(
        "bench",
        str(bundle),
        "--results",
        str(results),
        "--min-runs",
        "5",
        "--min-time",
        "0",
        "--repeats",
        "1",
    )
    assert r.returncode == 1
    assert "broken.onnx: benchmark worker exited with 1" in r.stderr
    assert r.stderr.strip().splitlines()[-1] == f"error: {bundle}: 1 of 2 files failed to benchmark"
    kept = [json.loads(line) for line in results.read_text().splitlines()]
    assert [k["model"] for k in kept] == ["good"] and kept[0]["latency"]["p50"] > 0


@pytest.mark.parametrize("verbose", [False, True])
def test_converter_log_lines_are_hidden_unless_verbose(capfd, monkeypatch, verbose):
    """What C++ libraries write straight to fd 2 (absl's `I0000 ...`) is hidden inside an export step;
    `--verbose` (EDGEKD_VERBOSE) shows it; edgekd's own lines outside the step are untouched."""
    import logging
    import os

    from export._files import VERBOSE_ENV, quiet_converters

    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    if verbose:
        monkeypatch.setenv(VERBOSE_ENV, "1")
    os.write(2, b"edgekd before\n")
    with quiet_converters():
        os.write(2, b"I0000 00:00:1 flatbuffer_export.cc:4410] Estimated count\n")
        torchao_warns = logging.getLogger("torchao").isEnabledFor(logging.WARNING)
    os.write(2, b"edgekd after\n")
    err = capfd.readouterr().err
    assert "edgekd before" in err and "edgekd after" in err
    assert ("I0000" in err) is verbose and torchao_warns is verbose


def test_third_party_start_up_lines_are_hidden_unless_verbose():
    """torchao's "Failed to load ... .so" (no CUDA here) and torch's pytree Enum notice, printed when the text
    path imports transformers/torchao, are hidden by edgekd's CLI unless --verbose."""
    pytest.importorskip("torchao")
    pytest.importorskip("transformers")
    imports = "import torchao, transformers"
    plain = subprocess.run([sys.executable, "-c", imports], capture_output=True, text=True, check=True)
    noisy = _start_up_lines(plain.stderr)
    if not noisy:
        pytest.skip("torchao and torch print nothing at import on this machine")
    for verbose, shown in ((False, 0), (True, len(noisy))):
        code = f"from toolkit.cli.main import _root; _root(debug=False, verbose={verbose}); {imports}"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert len(_start_up_lines(proc.stderr)) == shown, proc.stderr


def _start_up_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "Failed to load" in line or "Enum subclass" in line]


def test_a_bug_keeps_its_traceback_under_a_line_that_says_so(tmp_path, monkeypatch, capsys):
    """A numpy error inside edgekd is not bad input: it propagates (traceback) after one 'bug:' line."""
    import numpy as np

    from toolkit.cli import main as cli

    def broken_load(path):
        return np.zeros(3) + np.zeros(4)  # a real numpy ValueError, as a bug in edgekd would raise

    # patched where the CLI looks it up (a library function patched by name would leak into modules that
    # import it while this test runs)
    (tmp_path / "c.yaml").write_text("{}\n")
    monkeypatch.setattr(cli, "_load", broken_load)
    argv = ["edgekd", "distill", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "r")]
    monkeypatch.setattr("sys.argv", argv)
    monkeypatch.setitem(cli._state, "debug", False)
    with pytest.raises(ValueError, match="could not be broadcast"):
        cli.main()
    err = capsys.readouterr().err
    assert err.startswith("bug: edgekd ") and "failed with ValueError, which is a bug in edgekd" in err
    assert "error:" not in err


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (ValueError("a: b\nmore"), "a: b"),
        (ValueError(""), "ValueError"),  # an empty message: its type, not IndexError
        (OSError("\n  \n  second\n"), "second"),
        (KeyError("k"), "'k'"),
    ],
)
def test_first_line_of_any_message(exc, line):
    from toolkit.errors import first_line

    assert first_line(exc) == line
    assert first_line(exc, limit=2) == line[:2]
