"""Pareto fronts, ratios to the teacher, latest-duplicate-wins and the recommendation, on known answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.report_data import RECORDS, find, record, rows_of, write_run
from toolkit.report import build_report, pareto_front, recommend
from toolkit.report.recommend import recommendation_text

# (points, maximize, expected front); default axes: (accuracy up, cost down)
FRONTS = [
    (
        [(0.9, 1.0), (0.9, 1.0), (0.95, 2.0), (0.85, 0.5), (0.8, 1.5), (0.9, 1.2)],
        (True, False),
        [True, True, True, True, False, False],
    ),
    ([(0.9, 1.0), (0.8, 2.0), (0.95, 0.5)], (True, False), [False, False, True]),
    ([(1.0, 1.0), (2.0, 2.0), (2.0, 1.0)], (True, True), [False, True, False]),
    ([(1.0, 3.0, 5.0), (1.0, 3.0, 4.0)], (True, True, False), [False, True]),
    ([], (True, False), []),
]


@pytest.mark.parametrize(
    ("points", "maximize", "expected"),
    FRONTS,
    ids=["ties-and-dominated", "one-dominates-all", "both-maximized", "three-axes", "empty"],
)
def test_pareto_front_known_answers(points: list, maximize: tuple, expected: list[bool]) -> None:
    assert pareto_front(points, maximize=maximize) == expected


def test_pareto_front_rejects_a_point_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match=r"points\[1\] has 3 values, expected 2"):
        pareto_front([(1.0, 2.0), (1.0, 2.0, 3.0)])


# RECORDS on target "host": (accuracy, p50 ms, bytes); host-1cpu has a single row, alone on both fronts.
FRONT_MEMBERSHIP = {
    ("student_kd", "onnx", "int8", "host"): "lat+size",  # 0.895, 0.08 ms, 30 kB: fastest and smallest
    ("student_kd", "onnx", "fp32", "host"): "lat+size",  # 0.90, 0.1 ms, 100 kB
    ("teacher", "onnx", "fp32", "host"): "lat+size",  # 0.91: the most accurate
    ("student_kd", "tflite", "fp32", "host"): "",  # 0.90 at 0.2 ms and 110 kB: kd onnx fp32 beats it
    ("student_scratch", "onnx", "fp32", "host"): "",  # 0.88 at 0.1 ms and 100 kB: tied cost, less accurate
    ("student_kd", "onnx", "fp32", "host-1cpu"): "lat+size",
}


def test_front_membership_per_target(tmp_path: Path) -> None:
    rows = rows_of(tmp_path)
    assert {(r.model, r.format, r.precision, r.target_name): r.pareto for r in rows} == FRONT_MEMBERSHIP


def test_row_without_accuracy_is_never_on_a_front(tmp_path: Path) -> None:
    # Fastest and smallest of all, but not in the manifest and unmeasured: no accuracy at all.
    ghost = record("ghost", "onnx", "fp32", 0.01, 1_000, None)
    rows = rows_of(tmp_path, RECORDS + [ghost])
    assert find(rows, "ghost", "onnx", "fp32").pareto == ""
    assert find(rows, "student_kd", "onnx", "int8").pareto == "lat+size"


def test_exact_ratios_to_the_teacher(tmp_path: Path) -> None:
    records = [
        record("teacher", "onnx", "fp32", 2.0, 8_000_000, 0.91, peak_rss_mb=120.0),
        record("student_kd", "onnx", "fp32", 0.25, 100_000, 0.90, peak_rss_mb=48.0),
    ]
    row = find(rows_of(tmp_path, records), "student_kd", "onnx", "fp32")
    assert (row.speedup, row.size_ratio, row.memory_ratio, row.accuracy_delta_pts) == (8.0, 80.0, 2.5, -1.0)


def test_latest_duplicate_wins(tmp_path: Path) -> None:
    records = RECORDS + [
        record("student_kd", "onnx", "fp32", 0.05, 100_000, 0.90),  # re-run: faster
        record("teacher", "onnx", "fp32", 2.0, 6_000_000, 0.91),  # re-run: slower baseline
        record("student_kd", "onnx", "fp32", 0.1, 100_000, 0.90, threads=2),  # other config, not a duplicate
    ]
    result = build_report(write_run(tmp_path / "run", records))
    assert result.superseded == 6 and len(result.rows) == len(RECORDS) + 1
    one_thread = [r for r in result.rows if r.threads == 1]
    row = find(one_thread, "student_kd", "onnx", "fp32")
    assert (row.p50_ms, row.speedup) == (0.05, 40.0)
    for text in (result.markdown_path.read_text(), result.html_path.read_text()):
        assert "6 older benchmark record(s) superseded" in text  # 2 configurations x 3 rounds


# RECORDS plus a tflite int8 student: 0.905 at 0.3 ms, 20 kB (within 0.5 points, smallest, not fastest).
WITH_SMALL = RECORDS + [record("student_kd", "tflite", "int8", 0.3, 20_000, 0.905)]


def test_recommendation_under_budget(tmp_path: Path) -> None:
    host, host_1cpu = recommend(rows_of(tmp_path, WITH_SMALL), max_accuracy_drop=1.0)
    # Teacher 0.91: onnx int8 (0.895, -1.5) and scratch (0.88) are out; kd fp32 at exactly -1.00 is in.
    assert host.teacher is not None and host.teacher.accuracy == 0.91
    assert host.fastest is not None and (host.fastest.format, host.fastest.precision) == ("onnx", "fp32")
    assert host.smallest is not None and (host.smallest.format, host.smallest.precision) == ("tflite", "int8")
    assert recommendation_text(host) == (
        "**host** (native): within 1 accuracy point(s) of the teacher (onnx fp32, 91.00%), the fastest is "
        "**student_kd** onnx fp32 (onnxruntime, 1 thread, batch 1): 90.00% (-1.00 pts), "
        "p50 0.100 [0.0980–0.102] ms, 97.7 KiB; the smallest file is **student_kd** tflite int8 (litert, "
        "1 thread, batch 1): 90.50% (-0.50 pts), p50 0.300 [0.294–0.306] ms, 19.5 KiB."
    )
    assert host_1cpu.teacher is None and "no teacher row with an accuracy" in recommendation_text(host_1cpu)


def test_a_wider_budget_admits_the_int8_student(tmp_path: Path) -> None:
    (host, _) = recommend(rows_of(tmp_path, WITH_SMALL), max_accuracy_drop=1.5)
    assert host.fastest is not None
    assert (host.fastest.format, host.fastest.precision, host.fastest.p50_ms) == ("onnx", "int8", 0.08)


def test_a_file_that_failed_parity_is_never_recommended(tmp_path: Path) -> None:
    import dataclasses

    rows = [
        dataclasses.replace(r, parity_passed=False) if (r.format, r.precision) == ("onnx", "int8") else r
        for r in rows_of(tmp_path, WITH_SMALL)
    ]
    (host, _) = recommend(rows, max_accuracy_drop=1.5)  # the budget that admits it when it passes
    assert host.fastest is not None
    assert (host.fastest.format, host.fastest.precision, host.fastest.p50_ms) == ("onnx", "fp32", 0.1)


def test_no_student_qualifies_under_a_zero_budget(tmp_path: Path) -> None:
    result = build_report(write_run(tmp_path / "run", WITH_SMALL), max_accuracy_drop=0.0)
    host = result.recommendations[0]
    assert (host.fastest, host.smallest) == (None, None)
    expected = "no student qualifies within 0 accuracy point(s) of the teacher (onnx fp32, 91.00%)"
    assert expected in result.markdown_path.read_text()
    assert expected in result.html_path.read_text()


def test_negative_budget_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_accuracy_drop must be >= 0 accuracy points, got -0.5"):
        recommend(rows_of(tmp_path), max_accuracy_drop=-0.5)


# A KD student and its scratch twin: the same architecture, so the same size and (tied) speed.
TWINS = [
    record("teacher", "tflite", "fp32", 1.0, 6_000_000, 0.837),
    record("student_kd", "tflite", "int8", 0.05, 30_000, 0.837),
    record("student_scratch", "tflite", "int8", 0.0501, 30_000, 0.892),
]


def test_the_scratch_twin_that_scores_higher_is_the_recommendation(tmp_path: Path) -> None:
    """KD 83.7 %, scratch 89.2 %, equal files and p50s the test cannot tell apart: the scratch file is named,
    as better than the teacher, not as a drop."""
    (host,) = recommend(rows_of(tmp_path, TWINS), max_accuracy_drop=1.0)
    assert (host.fastest.model, host.fastest.precision) == ("student_scratch", "int8")
    assert [r.model for r in host.tied] == ["student_kd"] and host.smallest is host.fastest  # same size
    assert "89.20% (5.50 pts above the teacher)" in recommendation_text(host)


def test_an_unstable_row_never_wins_on_latency(tmp_path: Path) -> None:
    from dataclasses import replace

    rows = rows_of(tmp_path, TWINS)
    spread_out = (0.0401, 0.0501, 0.0601)  # leaving one round out moves the median 10 %
    shaky = [replace(r, round_p50s_ms=spread_out) if r.model == "student_scratch" else r for r in rows]
    (host,) = recommend(shaky, max_accuracy_drop=1.0)
    assert host.fastest.model == "student_kd"  # the stable twin, though the other is more accurate
    alone = [r for r in shaky if r.model != "student_kd"]
    (host,) = recommend(alone, max_accuracy_drop=1.0)
    assert host.fastest.model == "student_scratch"  # flagged, but the only one that qualifies


def test_report_says_first_when_distillation_did_not_pay(tmp_path: Path) -> None:
    import json

    from tests.report_data import SUMMARY, write_run

    run = write_run(tmp_path / "run", TWINS)
    summary = {**SUMMARY, "teacher": {**SUMMARY["teacher"], "val_accuracy": 0.84}}
    summary["student_kd"] = {**SUMMARY["student_kd"], "val_accuracy": 0.838}
    summary["student_scratch"] = {**SUMMARY["student_scratch"], "val_accuracy": 0.893}
    (run / "distill/summary.json").write_text(json.dumps(summary))
    text = build_report(run).markdown_path.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[1].startswith("> **Distillation did not pay on this run:** the student trained from scratch "
                               "scores 89.30 % on validation, the KD student 83.80 %.")  # fmt: skip
    assert lines[2] == "The scratch student beats its teacher on validation (89.30 % vs 84.00 %)."
    assert "**Best student:** student_scratch" not in text  # no scratch ONNX fp32 row in TWINS
    summary["student_scratch"]["val_accuracy"] = 0.80
    (run / "distill/summary.json").write_text(json.dumps(summary))
    assert "did not pay" not in build_report(run).markdown_path.read_text()
