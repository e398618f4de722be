"""Every output is written to a temporary name and renamed when whole (issue #19): a file that exists is
complete, and a writer that fails leaves the previous file as it was and no partial file behind."""

from __future__ import annotations

import os

import pytest

from benchmarks.files import atomic_path, write_text_atomic
from tests.report_data import write_run


def _partials(root):
    return sorted(p.name for p in root.rglob("*") if ".partial" in p.name)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_partial(tmp_path):
    dst = write_text_atomic(tmp_path / "out.txt", "old")
    with pytest.raises(RuntimeError), atomic_path(dst) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("killed mid-write")
    assert dst.read_text() == "old" and _partials(tmp_path) == []
    with pytest.raises(FileNotFoundError, match="wrote no file"), atomic_path(tmp_path / "none.txt"):
        pass
    assert not (tmp_path / "none.txt").exists()


def test_report_that_fails_midway_keeps_the_previous_report_whole(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import toolkit.report as report

    run = write_run(tmp_path / "run")
    first = report.build_report(run)
    html = (run / "report" / "report.html").read_text()
    assert "</html>" in html

    def broken(*args, **kwargs):
        raise RuntimeError("the HTML renderer died")

    monkeypatch.setattr(report, "blocks_to_html", broken)
    with pytest.raises(RuntimeError):
        report.build_report(run)
    assert (run / "report" / "report.html").read_text() == html  # the old one, whole
    assert _partials(run) == []
    assert first.markdown_path.read_text().startswith("#")


def test_results_csv_and_config_are_written_atomically(tmp_path, monkeypatch):
    import csv

    from benchmarks.records import write_csv
    from toolkit.config import RunConfig, save_config

    run = write_run(tmp_path / "run")
    out = write_csv(run / "bench" / "results.jsonl", run / "bench" / "results.csv")
    rows = list(csv.DictReader(out.open()))
    assert rows and float(rows[0]["latency_p50"]) > 0
    save_config(RunConfig(), tmp_path / "config.yaml")
    assert _partials(tmp_path) == [] and (tmp_path / "config.yaml").read_text().startswith("seed: 0")


def test_a_temporary_file_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    import subprocess

    proc = subprocess.Popen(["sleep", "0"])  # once it has exited, its pid names no running process
    proc.wait()
    orphan = tmp_path / f".model.{proc.pid}.partial.onnx"  # what SIGKILL mid-write leaves behind
    orphan.write_bytes(b"half")
    mine = tmp_path / f".model.{os.getpid()}.partial.onnx"
    with atomic_path(tmp_path / "model.onnx") as tmp:
        assert tmp == mine and not orphan.exists()
        tmp.write_bytes(b"whole")
    assert (tmp_path / "model.onnx").read_bytes() == b"whole" and _partials(tmp_path) == []
