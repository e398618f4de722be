"""Report: hand-made records and manifest → rows with exact ratios, Markdown, CSV, PNGs; compare; CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.report_data import CONSTRAINED, MANIFEST, NATIVE, RECORDS, find, record, rows_of, write_run
from toolkit.cli.main import app
from toolkit.errors import DataError, RunDirError
from toolkit.report import build_compare_report, build_report, read_manifest, read_results

PLOT_KINDS = ("accuracy_latency", "accuracy_size", "latency")  # one PNG each per target, then tradeoff.png
KD, TEACHER = RECORDS[1], RECORDS[2]  # student_kd and teacher, onnx fp32 on the native target
KD_CONSTRAINED = RECORDS[4]
KD_ENTRY = MANIFEST["models"][1]
RATIOS = ("Speedup [95% CI]", "Size ×", "Mem ×", "Δ acc (pts)")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def md_table(md: str, column: str) -> list[dict[str, str]]:
    """The rows of the first Markdown table in `md` whose header has `column`, as header -> cell text."""
    lines = md.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("|") and column in _cells(line) and lines[i + 1].startswith("|---"):
            header, rows = _cells(line), []
            for body in lines[i + 2 :]:
                if not body.startswith("|"):
                    break
                rows.append(dict(zip(header, _cells(body), strict=True)))
            return rows
    raise AssertionError(f"no table with a {column!r} column")


def md_row(rows: list[dict[str, str]], **match: str) -> dict[str, str]:
    (row,) = [r for r in rows if all(r[k] == v for k, v in match.items())]
    return row


def test_ratios_against_teacher(tmp_path: Path) -> None:
    row = find(rows_of(tmp_path), "student_kd", "onnx", "fp32")
    assert row.speedup == 10.0
    assert row.size_ratio == 60.0
    assert row.accuracy_delta_pts == -1.0
    assert (row.params, row.top1_agreement, row.parity_passed) == (24_058, 0.995, True)


def test_teacher_row_is_the_baseline(tmp_path: Path) -> None:
    rows = rows_of(tmp_path)
    teacher = find(rows, "teacher", "onnx", "fp32")
    assert [r for r in rows if r.is_baseline] == [teacher]
    assert (teacher.speedup, teacher.size_ratio, teacher.accuracy_delta_pts) == (1.0, 1.0, 0.0)
    assert rows[0] == teacher  # sorted: onnx, onnxruntime, fp32, teacher first


@pytest.mark.parametrize(
    ("fmt", "target"), [("tflite", "host"), ("onnx", "host-1cpu")], ids=["other-format", "other-target"]
)
def test_row_without_baseline_has_no_ratios(tmp_path: Path, fmt: str, target: str) -> None:
    row = find(rows_of(tmp_path), "student_kd", fmt, "fp32", target)
    assert (row.speedup, row.size_ratio, row.accuracy_delta_pts, row.is_baseline) == (None, None, None, False)


def test_accuracy_falls_back_to_parity(tmp_path: Path) -> None:
    row = find(rows_of(tmp_path), "student_kd", "onnx", "int8")
    assert (row.accuracy, row.n_accuracy) == (0.895, 500)
    assert row.speedup == pytest.approx(12.5, rel=1e-12)
    assert row.size_ratio == 200.0
    assert row.accuracy_delta_pts == -1.5


def test_build_report_writes_markdown_html_csv_png(tmp_path: Path) -> None:
    result = build_report(write_run(tmp_path / "run"))
    out = tmp_path / "run/report"
    assert (result.markdown_path, result.html_path, result.csv_path, result.plot_path) == (
        out / "report.md",
        out / "report.html",
        out / "results.csv",
        out / "tradeoff.png",
    )
    per_target = [f"{kind}_{slug}.png" for slug in ("host", "host-1cpu") for kind in PLOT_KINDS]
    assert [p.name for p in result.plot_paths] == per_target + ["tradeoff.png"]
    md = result.markdown_path.read_text()
    table = md_table(md, "Speedup [95% CI]")
    assert len(table) == len(RECORDS)
    kd = md_row(table, Model="student_kd", Format="onnx", Precision="fp32", Target="native")
    p50, size, acc = KD["latency"]["p50"], KD["file_size_bytes"], KD["accuracy"]
    assert (kd["Backend"], kd["Threads"], kd["Batch"], kd["Streams"]) == ("onnxruntime", "1", "1", "1")
    assert (kd["Params"], kd["MACs"]) == (f"{KD_ENTRY['params']:,}", "–")  # no MACs in the manifest
    assert kd["Size"] == f"{size / 1024:.1f} KiB" and kd["Acc %"] == f"{100 * acc:.2f}"
    assert kd["Top-1 agr."] == f"{100 * KD_ENTRY['parity']['top1_agreement']:.2f}%"
    # Three rounds at 0.98, 1.0 and 1.02 x p50: the median is p50, the interval spans the rounds.
    assert kd["p50 ms [95% CI]"] == f"{p50:.3f} [{0.98 * p50:.4f}–{1.02 * p50:.3f}]"
    assert [kd["p90 ms"], kd["p99 ms"]] == [f"{f * p50:.3f}" for f in (1.2, 1.5)]
    assert kd["Rounds · spread"] == "3 · 4.0%"  # (1.02 - 0.98) / 1.0, under the 5 % threshold
    assert kd["img/s"] == f"{1000 / p50:,.0f}" and kd["Peak RSS MB"] == f"{KD['peak_rss_mb']:.1f}"
    # ratios against the teacher row of the same format, backend, threads, batch and target
    # Both bootstraps at their round extremes in opposite directions bound the ratio; significant, unmarked.
    ratio = TEACHER["latency"]["p50"] / p50
    assert kd["Speedup [95% CI]"] == f"{ratio:.2f}× [{ratio * 0.98 / 1.02:.2f}–{ratio * 1.02 / 0.98:.2f}]"
    assert kd["Size ×"] == f"{TEACHER['file_size_bytes'] / size:.1f}×"
    assert kd["Mem ×"] == f"{TEACHER['peak_rss_mb'] / KD['peak_rss_mb']:.2f}×"
    assert kd["Δ acc (pts)"] == f"{100 * (acc - TEACHER['accuracy']):+.2f}"
    teacher = md_row(table, Model="**teacher**")  # the baseline, in bold
    assert teacher["Params"] == f"{MANIFEST['models'][0]['params']:,}"
    assert teacher["Acc %"] == f"{100 * TEACHER['accuracy']:.2f}"
    assert teacher["Size"] == f"{TEACHER['file_size_bytes'] / 2**20:.2f} MiB"
    assert [teacher[c] for c in RATIOS] == ["1.00×", "1.0×", "1.00×", "+0.00"]
    slow = md_row(table, Model="student_kd", Format="onnx", Target="*constrained local CPU*")
    assert slow["p50 ms [95% CI]"].startswith(f"{KD_CONSTRAINED['latency']['p50']:.3f} [")
    assert slow["img/s"] == f"{1000 / KD_CONSTRAINED['latency']['p50']:,.0f}"
    # no teacher row on that target: every ratio is a dash
    assert [slow[c] for c in RATIOS] == ["–"] * 4
    assert "Rows on *constrained local CPU* were measured on this machine under emulation or resource" in md
    scratch = md_row(table, Model="student_scratch")  # its manifest entry failed parity
    agreement = MANIFEST["models"][4]["parity"]["top1_agreement"]
    assert scratch["Top-1 agr."] == f"**FAILED** ({100 * agreement:.2f}%)"
    assert "PARITY CHECK FAILED** for student_scratch onnx fp32" in md
    for path in result.plot_paths:
        assert f"]({path.name})" in md and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = "**Best student:** student_kd (ONNX fp32, onnxruntime, 1 thread, native) is 10.00× [9.61–10.41]"
    assert f"{best} faster" in md
    for fact in (
        "10 warm-up runs",
        "`min_runs`=100",
        "Test CPU 9000 (2 cores usable), x86_64; python 3.11.2, numpy 2.1.0",
        "onnxruntime 1.20.1",
        "litert 1.2.0",
        "1000/500 held-out test images",
        "## Training",
        "+2.00 points",
    ):
        assert fact in md, fact
    png = result.plot_path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    with open(result.csv_path, newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(RECORDS) == len(result.rows)
    key = ("student_kd", "onnx", "fp32", "host")
    (kd,) = [r for r in table if (r["model"], r["format"], r["precision"], r["target_name"]) == key]
    assert (kd["speedup"], kd["size_ratio"], kd["accuracy_delta_pts"]) == ("10.0", "60.0", "-1.0")
    assert (kd["memory_ratio"], kd["pareto"], kd["macs"], kd["cpu_model"]) == (
        "1.0",
        "lat+size",
        "",
        "Test CPU 9000",
    )
    assert table[-1]["speedup"] == ""  # tflite row: no baseline, empty cell


def test_out_dir_and_missing_summary(tmp_path: Path) -> None:
    result = build_report(write_run(tmp_path / "run", summary=False), out_dir=tmp_path / "elsewhere")
    assert result.markdown_path == tmp_path / "elsewhere/report.md"
    assert "## Training" not in result.markdown_path.read_text()
    assert not (tmp_path / "run/report").exists()


GOOD = json.dumps(RECORDS[0])
BAD_LINES = [
    ("{not json", "invalid record \\(Expecting property name"),
    ("[1, 2]", "expected a JSON object, got list"),
    (json.dumps({k: v for k, v in RECORDS[0].items() if k != "latency"}), "missing keys \\['latency'\\]"),
    (json.dumps({**RECORDS[0], "threads": "4"}), "threads must be an integer, got '4'"),
    (json.dumps({**RECORDS[0], "latency": {"p50": 0.0, "p90": 1, "p99": 1}}), "latency.p50 must be positive"),
    (json.dumps({**RECORDS[0], "typo": 1}), "unknown keys \\['typo'\\]"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES, ids=[m for _, m in BAD_LINES])
def test_malformed_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(f"{GOOD}\n\n{line}\n")
    with pytest.raises(ValueError, match=rf"results\.jsonl:3: .*{message}") as info:
        read_results(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("write", "error", "message"),
    [
        (None, RunDirError, "benchmark results not found"),
        ("\n", DataError, "no benchmark records"),
    ],
    ids=["missing", "empty"],
)
def test_unusable_results_file(tmp_path: Path, write: str | None, error: type, message: str) -> None:
    path = tmp_path / "results.jsonl"
    if write is not None:
        path.write_text(write)
    with pytest.raises(error, match=message):
        read_results(path)


def test_duplicate_manifest_entry_raises(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({**MANIFEST, "models": MANIFEST["models"] + MANIFEST["models"][:1]}))
    with pytest.raises(DataError, match=r"manifest\.json: \(top level\): Value error, models\[5\] dup"):
        read_manifest(path)


def test_import_does_not_load_matplotlib() -> None:
    code = "import sys, toolkit.report; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_macs_come_from_the_manifest(tmp_path: Path) -> None:
    run = write_run(tmp_path)
    manifest = json.loads((run / "bundle/manifest.json").read_text())
    manifest["models"][1]["macs"] = 1_234_567
    (run / "bundle/manifest.json").write_text(json.dumps(manifest))
    table = md_table(build_report(run).markdown_path.read_text(), "MACs")
    key = ("student_kd", "onnx", "fp32")
    rows = [r for r in table if (r["Model"], r["Format"], r["Precision"]) == key]
    assert [r["MACs"] for r in rows] == ["1,234,567"] * 2  # both targets of the file with those MACs
    assert {r["MACs"] for r in table if r not in rows} == {"–"}


def _scaled(latency: dict, factor: float) -> dict:
    """A record's latency block with p50 and every sample times `factor`."""
    return {
        **latency,
        "p50": factor * latency["p50"],
        "samples_ms": [factor * v for v in latency["samples_ms"]],
    }


def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    """Run 'pc' (native, Test CPU 9000) and run 'pi' (constrained, Pi CPU, slower, no tflite row)."""
    pi_machine = {**RECORDS[0]["machine"], "cpu_model": "Pi CPU"}
    slow = [
        {**r, "latency": _scaled(r["latency"], 4), "target": CONSTRAINED}
        for r in RECORDS
        if r["format"] == "onnx" and r["target"] == NATIVE
    ]
    slow = [{**r, "machine": pi_machine, "peak_rss_mb": 40.0} for r in slow]
    return write_run(tmp_path / "pc", RECORDS[:4]), write_run(tmp_path / "pi", slow)


def test_compare_puts_runs_side_by_side(tmp_path: Path) -> None:
    pc, pi = two_runs(tmp_path)
    path = build_compare_report([pc, pi], out_dir=tmp_path / "cmp")
    assert path == tmp_path / "cmp/compare.md"
    md = path.read_text()
    header = (
        "| Model | Format | Precision | Backend | pc · native · Test CPU 9000: p50 ms [95% CI] | "
        "pc · native · Test CPU 9000: Acc % | pc · native · Test CPU 9000: Peak RSS MB | "
        "pi · *constrained local CPU* · Pi CPU: p50 ms [95% CI] | pi · *constrained local CPU* · Pi CPU: "
        "Δ p50 vs first | pi · *constrained local CPU* · Pi CPU: Acc % | "
        "pi · *constrained local CPU* · Pi CPU: Peak RSS MB |"
    )
    assert header in md
    table = md_table(md, "Backend")
    pc_, pi_ = "pc · native · Test CPU 9000: ", "pi · *constrained local CPU* · Pi CPU: "
    for model, rec in (("student_kd", KD), ("**teacher**", TEACHER)):
        row = md_row(table, Model=model, Format="onnx", Precision="fp32")
        p50, acc = rec["latency"]["p50"], f"{100 * rec['accuracy']:.2f}"
        assert row[pc_ + "p50 ms [95% CI]"].startswith(f"{p50:.3f} [")
        assert [row[pc_ + c] for c in ("Acc %", "Peak RSS MB")] == [acc, "80.0"]
        assert row[pi_ + "p50 ms [95% CI]"].startswith(f"{4 * p50:.3f} [")
        assert [row[pi_ + c] for c in ("Δ p50 vs first", "Acc %", "Peak RSS MB")] == ["+300.0%", acc, "40.0"]
    tflite = md_row(table, Model="student_kd", Format="tflite")
    assert tflite[pc_ + "p50 ms [95% CI]"].startswith(f"{RECORDS[3]['latency']['p50']:.3f} [")
    assert [tflite[pi_ + c] for c in ("p50 ms [95% CI]", "Δ p50 vs first", "Acc %", "Peak RSS MB")] == [
        "–"
    ] * 4
    assert "**pi** (`" in md and "Pi CPU (2 cores usable)" in md and "`min_runs`=100" in md
    assert "Column groups on *constrained local CPU* were measured under emulation" in md
    page = (tmp_path / "cmp/compare.html").read_text()
    assert (
        page.count('<th colspan="3">') == 1
        and page.count('<th colspan="4">') == 2  # the ungrouped Model..Backend span and the pi group
        and "<em>constrained local CPU</em>" in page
    )


def test_compare_needs_two_runs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least two run directories, got 1"):
        build_compare_report([write_run(tmp_path / "a")], out_dir=tmp_path)


def test_cli_report_one_run_and_compare(tmp_path: Path) -> None:
    pc, pi = two_runs(tmp_path)
    r = CliRunner().invoke(app, ["report", str(pc), "--max-accuracy-drop", "0"])
    assert r.exit_code == 0, r.output
    assert "report.md" in r.output and "no student qualifies" in (pc / "report/report.md").read_text()
    r = CliRunner().invoke(app, ["report", str(pc), str(pi)])
    assert r.exit_code == 0, r.output
    assert (pc / "report/compare.md").is_file() and (pc / "report/compare.html").is_file()
    r = CliRunner().invoke(app, ["report", str(pc), str(pi), "--out", str(tmp_path / "cmp")])
    assert r.exit_code == 0 and (tmp_path / "cmp/compare.md").is_file()
    r = CliRunner().invoke(app, ["report", str(pc), "--max-accuracy-drop", "-1"])
    assert r.exit_code == 2 and "--max-accuracy-drop" in r.output


def test_cli_compare_flag(tmp_path: Path) -> None:
    pc, pi = two_runs(tmp_path)
    r = CliRunner().invoke(app, ["report", "--compare", str(pc), str(pi), "--out", str(tmp_path / "c2")])
    assert r.exit_code == 0 and (tmp_path / "c2/compare.html").is_file()
    r = CliRunner().invoke(app, ["report", "--compare", str(pc)])
    assert r.exit_code == 1 and "--compare needs two or more run directories" in str(r.exception)


def test_streams_are_separate_configurations_with_their_own_baseline(tmp_path: Path) -> None:
    from benchmarks.records import BenchRecord, latest_rounds
    from toolkit.report.inputs import read_manifest
    from toolkit.report.rows import build_rows

    one = [
        record("teacher", "onnx", "fp32", 1.0, 6_000_000, 0.91),
        record("student_kd", "onnx", "fp32", 0.1, 100, 0.9),
    ]
    two = [dict(r, streams=2, throughput_ips=t) for r, t in zip(one, (1_800.0, 16_000.0), strict=True)]
    kept, superseded = latest_rounds([BenchRecord.from_dict(r) for r in one + two])
    assert len(kept) == 4 and superseded == 0
    rows = build_rows(kept, read_manifest(write_run(tmp_path) / "bundle/manifest.json"))
    student2 = next(r for r in rows if r.model == "student_kd" and r.streams == 2)
    teacher2 = next(r for r in rows if r.model == "teacher" and r.streams == 2)
    assert teacher2.is_baseline and student2.speedup == 10.0 and student2.throughput_ips == 16_000.0


def test_training_section_reports_kd_vs_scratch_per_seed(tmp_path: Path) -> None:
    import json

    run = write_run(tmp_path / "run")
    path = run / "distill/summary.json"
    summary = json.loads(path.read_text())
    summary["student_kd"]["test"] = {"top1": 0.9, "top5": 0.995, "ece": 0.0123, "per_class": {}}
    summary["kd_vs_scratch"] = {
        "per_seed": [
            {"seed": 0, "student_kd": 0.9100, "student_scratch": 0.9050},
            {"seed": 1, "student_kd": 0.9080, "student_scratch": 0.9090},
            {"seed": 2, "student_kd": 0.9120, "student_scratch": 0.9060},
        ],
        "mean_kd": 0.91,
        "mean_scratch": 0.9066666666666666,
        "delta_points": 0.333,
        "kd_wins": 2,
    }
    path.write_text(json.dumps(summary))
    md = build_report(run).markdown_path.read_text()
    assert "| 0 | 91.00 | 90.50 | +0.50 |" in md and "| 1 | 90.80 | 90.90 | -0.10 |" in md
    assert (
        "Over 3 seeds, the KD student's mean test accuracy (91.00 %) beats the same student trained from "
        "scratch (90.67 %) by +0.33 points; KD is better on 2 of 3 seeds." in md
    )
    assert "| 99.50 | 0.0123 |" in md


def test_which_runtime_names_each_runtimes_fastest_file_per_model(tmp_path):
    from tests.report_data import rows_of
    from toolkit.report.runtimes import runtime_lines

    (line,) = runtime_lines(rows_of(tmp_path))  # only student_kd on the host ran in two runtimes
    setup = "native, 1 thread(s), batch 1, 1 stream(s)"
    assert line.startswith(f"**student_kd** ({setup}): onnxruntime onnx int8 0.08")
    assert "; litert tflite fp32 0.2" in line and line.endswith("onnxruntime fastest, 2.50× litert's p50.")


def test_training_section_says_which_images_kept_their_labels(tmp_path: Path) -> None:
    import json

    run = write_run(tmp_path / "run")
    path = run / "distill/summary.json"
    summary = json.loads(path.read_text())
    summary["data"] = {"kind": "idx", "root": "/data", "train": 1000, "val": 5000, "test": 10000}
    summary["data"] |= {"labeled": 1000, "unlabeled": 54000, "label_budget": "100 per class, seed 0"}
    path.write_text(json.dumps(summary))
    md = build_report(run).markdown_path.read_text()
    assert (
        "Label budget (100 per class, seed 0): the 1,000 training images are the labeled ones; 54,000 more "
        "had their labels dropped, and no model trained on them." in md
    )
