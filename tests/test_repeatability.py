"""Rounds as the unit (#24): pooled p50 and its bootstrap interval, stability flags, significance, the
recommendation that does not rank on noise, core pinning and the `--fail-on-regression` gate."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks.records import BenchRecord, latest_rounds
from benchmarks.stats import bimodal, median_draws, pool_latency, ratio_interval, round_influence
from tests.conftest import edgekd_main, write_manifest_for
from tests.report_data import RECORDS, as_rounds, record, rows_of, write_run
from toolkit.report.recommend import recommend, recommendation_text
from toolkit.report.rows import build_rows
from toolkit.report.significance import compare_rounds


@pytest.mark.parametrize("n", [1, 2, 7, 8, 51, 1000])
def test_median_draws_match_brute_force_resampling(n):
    x = np.random.default_rng(n).lognormal(0.0, 0.3, size=n)
    fast = median_draws(x, 20_000, np.random.default_rng(1))
    brute = np.median(x[np.random.default_rng(2).integers(0, n, size=(20_000, n))], axis=1)
    # Same distribution: every quantile within the Monte-Carlo error of 20k draws (and on the data's grid).
    for q in (2.5, 10, 25, 50, 75, 90, 97.5):
        a, b = np.percentile(fast, q), np.percentile(brute, q)
        assert abs(a - b) <= 0.02 * np.median(x), (n, q, a, b)


def test_pooled_p50_is_the_median_of_round_medians_with_an_interval_around_it():
    rng = np.random.default_rng(0)
    rounds = [rng.lognormal(np.log(m), 0.2, size=3000) for m in (0.050, 0.052, 0.055, 0.051, 0.049)]
    pooled = pool_latency(rounds)
    assert pooled.p50_ms == pytest.approx(np.median([np.median(r) for r in rounds]))
    assert pooled.rounds == 5 and pooled.ci_low_ms < pooled.p50_ms < pooled.ci_high_ms
    # The interval covers the spread between rounds, not only the tiny noise inside one of them.
    inside_one = pool_latency(rounds[:1])
    assert inside_one.ci_high_ms - inside_one.ci_low_ms < 0.2 * (pooled.ci_high_ms - pooled.ci_low_ms)
    assert pooled.spread == pytest.approx(
        (max(pooled.round_p50s_ms) - min(pooled.round_p50s_ms)) / pooled.p50_ms
    )
    # 12 % between the slowest and fastest round, evenly filled: no one round moves the median by 2.5 %
    assert pooled.influence == pytest.approx(round_influence(pooled.round_p50s_ms))
    assert 0 < pooled.influence < 0.025
    assert not pooled.unstable and not pooled.bimodal


@pytest.mark.parametrize(
    ("p50s", "is_bimodal", "is_unstable"),
    [
        ([0.0378, 0.0521, 0.0518], False, True),  # the 38 % jump: one stray round, an outlier
        ([0.0378, 0.0380, 0.0521, 0.0518], True, True),  # two rounds on each side of the jump
        ([0.050, 0.052, 0.054], False, False),  # a drift, no gap: one round moves the median 1.9 %
        ([0.0500, 0.0502, 0.0504], False, False),
        ([0.040, 0.050, 0.060], False, True),  # evenly spread: no two clusters
        ([0.040, 0.041, 0.060, 0.061, 0.0605], True, True),
        ([0.040, 0.060], False, True),  # two rounds cannot tell clusters from spread
        ([0.040, 0.041, 0.042, 0.060], False, False),  # one stray round: the median holds (1.2 %)
        ([0.040, 0.041, 0.042, 0.060, 0.061], True, True),  # two slow rounds: leaving one out moves it 21 %
    ],
)
def test_stability_flags(p50s, is_bimodal, is_unstable):
    assert bimodal(p50s) is is_bimodal
    pooled = pool_latency([[v] * 50 for v in p50s])
    assert (pooled.bimodal, pooled.unstable) == (is_bimodal, is_unstable)


def _rounds(rng, median: float, n_rounds: int = 3) -> list[float]:
    """Round p50s of one configuration: 4 % process-to-process noise, as measured on this VM's students."""
    return list(median * rng.lognormal(0.0, 0.04, size=n_rounds))


def test_overlapping_configurations_are_not_declared_different():
    diff = compare_rounds([0.050, 0.052, 0.049], [0.051, 0.049, 0.053])  # interleaved rounds
    assert diff.tested and not diff.significant and diff.mark() == " (n.s.)"
    rng = np.random.default_rng(7)
    # Over many pairs drawn from one distribution, about alpha of them come out "different", not more.
    false = sum(compare_rounds(_rounds(rng, 0.05), _rounds(rng, 0.05)).significant for _ in range(400))
    assert false <= 0.09 * 400


def test_configurations_twenty_percent_apart_are_declared_different():
    a, b = [0.050, 0.052, 0.049], [0.061, 0.0605, 0.0625]  # the same rounds, 20 % slower, jittered
    diff = compare_rounds(a, b)
    assert diff.significant and diff.mark() == "" and diff.pct == pytest.approx((0.061 / 0.050 - 1) * 100)
    rng = np.random.default_rng(7)
    found = sum(compare_rounds(_rounds(rng, 0.05), _rounds(rng, 0.06)).significant for _ in range(400))
    assert found >= 0.8 * 400


def test_one_round_is_never_tested():
    diff = compare_rounds([0.05], [0.5])
    assert not diff.tested and not diff.significant and diff.mark() == " (untested)"


def test_speedup_interval_comes_from_both_bootstraps():
    rng = np.random.default_rng(3)
    teacher = pool_latency([rng.lognormal(np.log(m), 0.1, 500) for m in (1.0, 1.05, 0.97)], seed=1)
    student = pool_latency([rng.lognormal(np.log(m), 0.1, 500) for m in (0.1, 0.11, 0.095)], seed=2)
    low, high = ratio_interval(teacher, student)
    assert low < teacher.p50_ms / student.p50_ms < high
    assert high / low > (teacher.ci_high_ms / teacher.ci_low_ms)  # wider than the teacher's own interval


def test_a_latency_gap_that_is_noise_does_not_decide_the_recommendation(tmp_path):
    # tflite fp32 (0.101 ms, 110 kB) and onnx fp32 (0.100 ms, 100 kB) overlap: tied, the smaller file wins.
    close = [r for r in RECORDS if r["format"] != "tflite"]
    close.append(record("student_kd", "tflite", "fp32", 0.101, 90_000, 0.90))
    rows = rows_of(tmp_path / "close", close)
    (host, _) = recommend(rows, max_accuracy_drop=1.0)[:2]
    assert (host.fastest.format, host.fastest.precision) == ("tflite", "fp32")
    assert [(r.format, r.precision) for r in host.tied] == [("onnx", "fp32")]
    assert "statistically tied on p50 with 1 other row, so the smallest file among them is named" in (
        recommendation_text(host)
    )
    # 3x apart with the same round noise: significant, so the faster one is named even though it is bigger.
    far = [r for r in RECORDS if r["format"] != "tflite"]
    far.append(record("student_kd", "tflite", "fp32", 0.3, 90_000, 0.90))
    (host, _) = recommend(rows_of(tmp_path / "far", far), max_accuracy_drop=1.0)[:2]
    assert (host.fastest.format, host.fastest.precision, host.tied) == ("onnx", "fp32", ())


def test_one_round_each_is_no_gate(tmp_path, monkeypatch, capsys):
    a = write_run(tmp_path / "a", factors=(1.0,))
    b = write_run(tmp_path / "b", factors=(1.0,))
    code, err = edgekd_main(
        monkeypatch, capsys, "report", "--compare", str(a), str(b), "--fail-on-regression", "5"
    )
    assert code == 1 and f"{len(RECORDS)} configurations match {a}, but each has one round on a side" in err


def test_untested_gaps_are_no_tie(tmp_path):
    # One round each: nothing can be tested, so p50 decides and nothing is called "tied".
    close = [r for r in RECORDS if r["format"] != "tflite"]
    close.append(record("student_kd", "tflite", "fp32", 0.101, 90_000, 0.90))
    (host, _) = recommend(rows_of(tmp_path, close, (1.0,)), max_accuracy_drop=1.0)[:2]
    assert (host.fastest.format, host.tied) == ("onnx", ())


def test_a_threshold_gate_does_not_fail_a_small_slowdown():
    from toolkit.report.significance import slower_by_more_than

    base = [1.00, 1.01, 0.99, 1.00, 1.02]
    slower = [1.06, 1.07, 1.05, 1.06, 1.08]  # 6 % slower, clearly
    assert compare_rounds(base, slower).significant
    assert not slower_by_more_than(base, slower, 5).significant  # but not clearly more than 5 %
    assert slower_by_more_than(base, slower, 2).significant
    assert not slower_by_more_than(slower, base, 0).significant  # faster is never a regression


def test_interval_covers_about_95_percent_at_the_default_rounds():
    from benchmarks.protocol import DEFAULT_PROTOCOL

    rng = np.random.default_rng(0)
    rounds, trials, hits = DEFAULT_PROTOCOL.repeats, 300, 0
    for t in range(trials):  # 5 % process-to-process noise around a true median of 0.05 ms
        medians = np.exp(rng.normal(np.log(0.05), 0.05, size=rounds))
        pooled = pool_latency([m * rng.lognormal(0, 0.2, 500) for m in medians], n_boot=2000, seed=t)
        hits += pooled.ci_low_ms <= 0.05 <= pooled.ci_high_ms
    assert hits / trials >= 0.88  # measured 0.92; a 3-round interval covers ~0.80


def test_a_rerun_supersedes_every_round_of_the_earlier_call():
    first = [BenchRecord.from_dict(r) for r in as_rounds(RECORDS[1])]
    again = [BenchRecord.from_dict(r) for r in as_rounds(dict(RECORDS[1], load_ms=9.0), (1.0, 1.1))]
    kept, superseded = latest_rounds(first + again)
    assert superseded == 3 and [(r.round, r.load_ms) for r in kept] == [(0, 9.0), (1, 9.0)]
    # A later call whose round 0 is missing (it failed there) still starts a new call.
    late = [BenchRecord.from_dict(r) for r in as_rounds(dict(RECORDS[1], load_ms=7.0), (1.0, 1.1, 1.2))]
    kept, superseded = latest_rounds(first + late[1:])
    assert superseded == 3 and [(r.round, r.load_ms) for r in kept] == [(1, 7.0), (2, 7.0)]


# --- real workers: pinning and the regression gate ---

FAST = ["--min-runs", "30", "--min-time", "0"]


def heavy_onnx(path: Path, side: int = 4, width: int = 512, depth: int = 6) -> Path:
    """The same input and output as onnx_classifier, with a stack of width x width MatMuls in between."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    dims = [side * side] + [width] * depth + [3]
    shapes = zip(dims[:-1], dims[1:], strict=True)
    weights = [(rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32) for a, b in shapes]
    nodes = [helper.make_node("Flatten", ["input"], ["h0"], axis=1)]
    nodes += [helper.make_node("MatMul", [f"h{i}", f"w{i}"], [f"h{i + 1}"]) for i in range(len(weights))]
    nodes.append(helper.make_node("Identity", [f"h{len(weights)}"], ["output"]))
    graph = helper.make_graph(
        nodes,
        "heavy",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, side, side])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3])],
        initializer=[numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(weights)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _run_dir(root: Path, *, slow: bool) -> Path:
    """A run directory whose bundle holds one student file: the small one, or a heavy one under its name."""
    bundle = root / "bundle"
    bundle.mkdir(parents=True)
    path = bundle / "student_kd.onnx"
    heavy_onnx(path) if slow else heavy_onnx(path, width=64, depth=2)
    model = {
        "name": "student_kd",
        "role": "student",
        "file": path.name,
        "format": "onnx",
        "precision": "fp32",
    }
    spec = {"name": "input", "shape": [None, 1, 4, 4], "dtype": "float32", "layout": "NCHW"}
    spec["preprocessing"] = {"scale": 1 / 255, "mean": [0.0], "std": [1.0]}
    write_manifest_for(bundle, [model], input=spec)
    return root


def _bench(monkeypatch, capsys, run: Path, *extra: str) -> list[BenchRecord]:
    from benchmarks.records import read_records

    code, err = edgekd_main(monkeypatch, capsys, "bench", str(run), *FAST, *extra)
    assert code == 0, err
    return read_records(run / "bench/results.jsonl")


def test_workers_are_pinned_to_one_core_unless_told_not_to(tmp_path, monkeypatch, capsys):
    run = _run_dir(tmp_path / "run", slow=False)
    (pinned,) = _bench(monkeypatch, capsys, run, "--repeats", "1")
    cores = sorted(os.sched_getaffinity(0))
    assert pinned.cpu_affinity == cores[-1:] and pinned.protocol["pin"] is True
    shutil.rmtree(run / "bench")
    (free,) = _bench(monkeypatch, capsys, run, "--repeats", "1", "--no-pin")
    assert free.cpu_affinity == cores and free.protocol["pin"] is False


def test_fail_on_regression_catches_a_slower_file_and_passes_a_rerun(tmp_path, monkeypatch, capsys):
    base = _run_dir(tmp_path / "base", slow=False)
    _bench(monkeypatch, capsys, base, "--repeats", "3")
    rerun = tmp_path / "rerun"
    shutil.copytree(base / "bundle", rerun / "bundle")
    _bench(monkeypatch, capsys, rerun, "--repeats", "3")
    slower = _run_dir(tmp_path / "slower", slow=True)  # the same name and input, ~40x the work
    _bench(monkeypatch, capsys, slower, "--repeats", "3")

    code, err = edgekd_main(
        monkeypatch, capsys, "report", "--compare", str(base), str(rerun), "--fail-on-regression", "50"
    )
    assert code == 0, err
    code, err = edgekd_main(
        monkeypatch, capsys, "report", "--compare", str(base), str(slower), "--fail-on-regression", "50"
    )
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        f"error: {slower}: 1 of 1 tested configurations significantly slower than in {base} by more than 50%"
    )
    compare = (base / "report/compare.md").read_text()
    assert "Δ p50 vs first" in compare


def test_the_gate_fails_when_nothing_matches(tmp_path, monkeypatch, capsys):

    a = write_run(tmp_path / "a")
    b = write_run(tmp_path / "b", [dict(r, threads=4) for r in RECORDS])
    code, err = edgekd_main(
        monkeypatch, capsys, "report", "--compare", str(a), str(b), "--fail-on-regression", "5"
    )
    assert code == 1 and "no benchmarked configuration matches one of" in err
    code, err = edgekd_main(monkeypatch, capsys, "report", str(a), "--fail-on-regression", "5")
    assert code == 1 and "--fail-on-regression needs --compare and a second run directory" in err


def test_report_marks_unstable_and_bimodal_rows(tmp_path):
    from toolkit.report import build_report

    result = build_report(write_run(tmp_path / "run", factors=(0.8, 1.0, 1.01)))
    md = result.markdown_path.read_text()
    unstable = (
        "Unstable p50 (leaving out one round moves it by more than 2.5%): teacher onnx fp32 (10%), "
        "student_kd onnx fp32 (10%)"
    )
    assert unstable in md
    assert "3 · 21.0% **unstable**" in md and "Bimodal" not in md  # one stray round is no second mode
    assert "Rows with 3 rounds: their 95% intervals cover less than 95%" in md
    assert all(abs(r.spread - 0.21) < 1e-9 for r in result.rows)
    result = build_report(write_run(tmp_path / "two", factors=(0.8, 0.81, 1.0, 1.01, 1.0)))
    md = result.markdown_path.read_text()
    assert (
        "5 · 21.0% **unstable bimodal**" in md and "Bimodal rounds (two clusters of p50s): teacher onnx" in md
    )
    assert "cover less than 95%" not in md


def test_a_record_without_samples_still_reads_and_pools_on_its_p50():
    lat = {k: v for k, v in RECORDS[1]["latency"].items() if k != "samples_ms"}  # samples are optional
    scaled = [dict(lat, p50=f * lat["p50"]) for f in (0.9, 1.0)]
    rounds = [BenchRecord.from_dict(dict(RECORDS[1], latency=x, round=i)) for i, x in enumerate(scaled)]
    assert [r.latency.samples_ms for r in rounds] == [[], []]
    (row,) = build_rows(rounds, {})
    assert row.round_p50s_ms == (0.9 * lat["p50"], lat["p50"])
