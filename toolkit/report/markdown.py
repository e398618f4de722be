"""Rows → the report's content as blocks (and as Markdown): how it was measured, picks, table, plots."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.records import BenchRecord
from benchmarks.stats import COVERED_ROUNDS, STABLE_INFLUENCE
from toolkit.data.kinds import text_kinds
from toolkit.report.blocks import Block, heading, image, note, para, table
from toolkit.report.int8_method import int8_method_blocks
from toolkit.report.outputs import output_check_blocks
from toolkit.report.plot_target import plot_caption
from toolkit.report.recommend import Recommendation, recommendation_text
from toolkit.report.rows import ReportRow
from toolkit.report.runtimes import runtime_lines
from toolkit.report.slower import slower_than_fp32_lines
from toolkit.report.table import Table, fmt_size, fmt_speedup, opt, results_table, target_cell
from toolkit.rundir.summary import DistillSummary, KdVsScratch, ModelSummary

__all__ = ["ReportContext", "build_context", "machine_facts", "report_blocks", "fmt_size"]

TITLE = "edgekd report: compression trade-off"


@dataclass(frozen=True)
class ReportContext:
    """Facts about how the rows were measured, gathered from the records (plus the training summary)."""

    warmup: list[int] = field(default_factory=list)
    protocol: dict[str, list[Any]] = field(default_factory=dict)
    machines: list[str] = field(default_factory=list)
    runtimes: list[str] = field(default_factory=list)
    training: DistillSummary | None = None
    superseded: int = 0  # older records of a configuration measured again later, left out


def _distinct(values: list[Any]) -> list[Any]:
    """Values in first-seen order without repeats (works for unhashable values too)."""
    out: list[Any] = []
    for v in values:
        if v is not None and v not in out:
            out.append(v)
    return out


def _machine(rec: BenchRecord) -> str:
    """'CPU (N cores usable), arch; python X, numpy Y' from a record's machine facts."""
    m = rec.machine or {}
    versions = {"python": m.get("python"), "numpy": (m.get("versions") or {}).get("numpy")}
    extras = ", ".join(f"{k} {v}" for k, v in versions.items() if v)
    cores = m.get("affinity_cores") or m.get("logical_cores") or "?"
    desc = f"{m.get('cpu_model') or 'unknown CPU'} ({cores} cores usable), {m.get('arch') or '?'}"
    return f"{desc}; {extras}" if extras else desc


def build_context(
    records: list[BenchRecord], training: DistillSummary | None = None, *, superseded: int = 0
) -> ReportContext:
    """Collect warm-up, protocol, machine and runtime facts from the records (distinct values, in order)."""
    protocol: dict[str, list[Any]] = {}
    for rec in records:
        for key, value in (rec.protocol or {}).items():
            if value not in protocol.setdefault(key, []):
                protocol[key].append(value)
    runtimes = [f"{r.backend} {r.runtime_version}" for r in records if r.runtime_version]
    return ReportContext(
        warmup=_distinct([r.warmup for r in records]),
        protocol=protocol,
        machines=_distinct([_machine(r) for r in records]),
        runtimes=_distinct(runtimes),
        training=training,
        superseded=superseded,
    )


def machine_facts(ctx: ReportContext) -> str:
    """Warm-up, protocol, machine and runtimes in one sentence group."""
    warmup = "/".join(str(w) for w in ctx.warmup) or "?"
    protocol = ", ".join(f"`{k}`={'/'.join(map(str, v))}" for k, v in ctx.protocol.items())
    return (
        f"{warmup} warm-up runs, then timed runs{f' ({protocol})' if protocol else ''}. "
        f"Machine: {'; '.join(ctx.machines) or 'unknown'}. Runtimes: {', '.join(ctx.runtimes) or 'unknown'}."
    )


def _unit(training: DistillSummary | None) -> str:
    """What one example is: "texts" for the text data kinds, else "images"."""
    return "texts" if training is not None and training.data.kind in text_kinds() else "images"


def _measured(rows: list[ReportRow], ctx: ReportContext) -> str:
    """The paragraph saying how the numbers were measured."""
    n_images = "/".join(str(n) for n in _distinct([r.n_accuracy for r in rows])) or "?"
    unit = _unit(ctx.training)
    return (
        f"Each row is one exported file run by the benchmark harness: {machine_facts(ctx)} "
        f"Latency is wall time per batch in ms (p50/p90/p99); throughput is {unit} per second (the "
        "img/s column). "
        f"{_rounds_text(rows)} "
        f"Accuracy measured on {n_images} held-out test {unit}. Speedup, size ×, mem × (teacher peak RSS / "
        "row peak RSS) and Δ acc compare each row with the teacher fp32 row (**bold**) of the same format, "
        "backend, threads, batch and target; – means no such row was benchmarked."
    )


def _rounds_text(rows: list[ReportRow]) -> str:
    """How rounds were pooled, what the interval covers and how differences were tested."""
    counts = "/".join(str(n) for n in sorted({r.rounds for r in rows}))
    return (
        f"Each configuration ran in {counts} fresh worker process(es) (rounds, in shuffled order); p50 is "
        "the median of the rounds' p50s, [95% CI] a bootstrap over rounds and their samples. A speedup "
        "marked (n.s.) is not significantly different from 1× (Welch's t-test on the rounds' log p50s, "
        f"p ≥ 0.05); (untested) means a side had one round. *Rounds · spread*: (max − min) / median of "
        f"the rounds' p50s; **unstable** when leaving out any one round moves the pooled p50 by more than "
        f"{STABLE_INFLUENCE:.1%} (it would not repeat: one stray round of five does not do that), "
        "**bimodal** when rounds form two clusters."
    )


def _stability_notes(rows: list[ReportRow]) -> list[Block]:
    """Callouts for rows whose rounds disagree, and for a run with a single round."""
    blocks = []
    shaky = [f"{r.model} {r.format} {r.precision} ({r.influence * 100:.0f}%)" for r in rows if r.unstable]
    if shaky:
        blocks.append(
            note(
                f"Unstable p50 (leaving out one round moves it by more than {STABLE_INFLUENCE:.1%}): "
                f"{', '.join(shaky)}. Rerun with more `--repeats`, on an idle machine, before ranking these "
                "rows on latency; the recommendation prefers a stable row."
            )
        )
    split = [f"{r.model} {r.format} {r.precision}" for r in rows if r.bimodal]
    if split:
        blocks.append(note(f"Bimodal rounds (two clusters of p50s): {', '.join(split)}."))
    few = sorted({r.rounds for r in rows if 2 <= r.rounds < COVERED_ROUNDS})
    if few:
        blocks.append(
            note(
                f"Rows with {'/'.join(map(str, few))} rounds: their 95% intervals cover less than 95% (a "
                "bootstrap cannot reach beyond the rounds' own range; in simulation about 80% at 3 rounds, "
                f"92% at 5). Use `--repeats {COVERED_ROUNDS}` or more for intervals to rank by."
            )
        )
    if rows and max(r.rounds for r in rows) < 2:
        blocks.append(
            note(
                "One round per configuration: the intervals cover only the noise inside one worker "
                "process and no difference could be tested. Use `--repeats 3` or more."
            )
        )
    return blocks


def _notes(rows: list[ReportRow], ctx: ReportContext) -> list[Block]:
    """Callouts: superseded duplicates, unstable rounds, non-native targets, failed parity checks."""
    blocks = _stability_notes(rows)
    if ctx.superseded:
        blocks.append(
            note(
                f"{ctx.superseded} older benchmark record(s) superseded: the same configuration was measured "
                "again later, and only the rounds of its latest `edgekd bench` call are reported."
            )
        )
    labels = _distinct([target_cell(r) for r in rows if r.target_kind != "native"])
    if labels:
        blocks.append(
            note(
                f"Rows on {', '.join(labels)} were measured on this machine under emulation or resource "
                "limits (Target column). Their numbers describe that setup, not the device it imitates."
            )
        )
    failed = _distinct([f"{r.model} {r.format} {r.precision}" for r in rows if r.parity_passed is False])
    if failed:
        blocks.append(note(f"**PARITY CHECK FAILED** for {', '.join(failed)}: outputs differ from torch."))
    for warning in ctx.training.warnings if ctx.training is not None else []:
        blocks.append(note(f"**Training warning:** {warning}."))
    return blocks


_STUDENT_NAMES = {"student_kd": "KD student", "student_scratch": "scratch student"}


def _val(training: DistillSummary | None, name: str) -> float | None:
    model = training.models.get(name) if training is not None else None
    return model.val_accuracy if model is not None else None


def _better_student(training: DistillSummary | None) -> str:
    """student_scratch when it is at least as good as the KD student on validation, else student_kd."""
    kd, scratch = _val(training, "student_kd"), _val(training, "student_scratch")
    return "student_scratch" if kd is not None and scratch is not None and scratch >= kd else "student_kd"


def _verdict(training: DistillSummary | None) -> list[Block]:
    """The report's first lines: whether distillation paid (validation split), and a student that beats
    its teacher."""
    kd, scratch, teacher = (_val(training, n) for n in ("student_kd", "student_scratch", "teacher"))
    better = _better_student(training)
    blocks = []
    if better == "student_scratch":
        blocks.append(
            note(
                f"**Distillation did not pay on this run:** the student trained from scratch scores "
                f"{scratch * 100:.2f} % on validation, the KD student {kd * 100:.2f} %. The recommendation "
                "below names the best file, whatever trained it."
            )
        )
    best = _val(training, better)
    if best is not None and teacher is not None and best > teacher:
        blocks.append(
            para(
                f"The {_STUDENT_NAMES[better]} beats its teacher on validation "
                f"({best * 100:.2f} % vs {teacher * 100:.2f} %)."
            )
        )
    return blocks


def _best_student(rows: list[ReportRow], model: str = "student_kd") -> str | None:
    """One line on a student's ONNX fp32 file vs the teacher, preferring a native target."""
    wanted = (model, "onnx", "fp32")
    candidates = [r for r in rows if (r.model, r.format, r.precision) == wanted and r.speedup]
    candidates.sort(key=lambda r: r.target_kind != "native")
    if not candidates:
        return None
    r = candidates[0]
    size = opt(r.size_ratio, lambda s: f"{s:.1f}×")
    delta = opt(r.accuracy_delta_pts, lambda d: f"{d:+.2f}")
    threads = f"{r.threads} thread{'s' if r.threads != 1 else ''}"
    return (
        f"**Best student:** {model} (ONNX fp32, {r.backend}, {threads}, {target_cell(r)}) is "
        f"{fmt_speedup(r)} faster at p50, {size} smaller and {delta} accuracy points vs the teacher."
    )


def _pct(x: float | None) -> str:
    return opt(x, lambda a: f"{a * 100:.2f}")


def _models_table(models: dict[str, ModelSummary]) -> Table:
    """One row per trained model: size, seed, teacher targets and torch test metrics."""
    return Table(
        headers=["Model", "Params", "Seed", "Teacher targets", "Test top-1 (torch) %", "Top-5 %", "ECE"],
        cells=[
            [
                name,
                opt(m.params, lambda p: f"{p:,}"),
                opt(m.seed, str),
                m.teacher_targets or ("loaded" if m.loaded else "–"),
                _pct(m.test_accuracy),
                _pct(m.test.get("top5")),
                opt(m.test.get("ece"), lambda v: f"{v:.4f}"),
            ]
            for name, m in models.items()
        ],
        values=[
            [None, m.params, m.seed, None, m.test_accuracy, m.test.get("top5"), m.test.get("ece")]
            for m in models.values()
        ],
        numeric=[False, True, True, False, True, True, True],
    )


def _kd_vs_scratch(cmp: KdVsScratch) -> list[Block]:
    """Per-seed KD vs scratch test accuracy, then one paragraph on the means and the wins."""
    rows = [r.model_dump() for r in cmp.per_seed]
    seeds = Table(
        headers=["Seed", "KD student %", "Scratch student %", "KD − scratch (points)"],
        cells=[
            [
                str(r["seed"]),
                _pct(r["student_kd"]),
                _pct(r["student_scratch"]),
                f"{100 * (r['student_kd'] - r['student_scratch']):+.2f}",
            ]
            for r in rows
        ],
        values=[
            [r["seed"], r["student_kd"], r["student_scratch"], r["student_kd"] - r["student_scratch"]]
            for r in rows
        ],
        numeric=[True, True, True, True],
    )
    verdict = "beats" if cmp.delta_points > 0 else "does not beat"
    summary = para(
        f"Over {len(rows)} seed{'s' if len(rows) != 1 else ''}, the KD student's mean test accuracy "
        f"({cmp.mean_kd * 100:.2f} %) {verdict} the same student trained from scratch "
        f"({cmp.mean_scratch * 100:.2f} %) by {cmp.delta_points:+.2f} points; KD is better on "
        f"{cmp.kd_wins} of {len(rows)} seeds."
    )
    return [table(seeds), summary]


def _data_para(training: DistillSummary) -> list[Block]:
    """One paragraph: where the images came from, the split sizes and the class names."""
    data = training.data
    classes = data.classes or []
    names = f": {', '.join(classes[:50])}{' …' if len(classes) > 50 else ''}" if classes else ""
    budget = ""
    if data.labeled is not None:
        budget = (
            f" Label budget ({data.label_budget}): the {data.labeled:,} training {_unit(training)} are the "
            f"labeled ones; {data.unlabeled or 0:,} more had their labels dropped, and no model trained on "
            "them."
        )
    return [
        para(
            f"Data: {data.kind} `{data.root}`, {data.train:,} training / {data.val:,} "
            f"validation / {data.test:,} test {_unit(training)}; {len(classes) or 'an unknown number of'} "
            f"classes{names}.{budget}"
        )
    ]


def _training(training: DistillSummary) -> list[Block]:
    """The Training section: torch test metrics per model, and the KD gain over training from scratch."""
    blocks = [heading("Training"), *_data_para(training), table(_models_table(training.models))]
    if training.kd_vs_scratch is not None:
        return blocks + _kd_vs_scratch(training.kd_vs_scratch)
    # No multi-seed comparison: fall back to the single KD and scratch runs, when both were evaluated.
    kd, scratch = training.models.get("student_kd"), training.models.get("student_scratch")
    if kd is not None and scratch is not None:
        gain = (kd.test_accuracy - scratch.test_accuracy) * 100
        blocks.append(
            para(f"Distillation gain over the same student trained from scratch: {gain:+.2f} points.")
        )
    return blocks


_PARETO = (
    "Pareto: *lat* marks rows no other row on the same target beats on both accuracy and p50 latency "
    "(at least as good on both, strictly better on one); *size* the same for accuracy and file size. "
    "Rows without an accuracy are never on a front."
)


def _plots(plots: dict[str, list[Path]], rows: list[ReportRow], overview: str | Path | None) -> list[Block]:
    """The Plots section: per target accuracy vs latency, vs size and latency bars, then the overview."""
    labels = {r.target_name: target_cell(r) for r in rows}
    blocks = [heading("Plots")] if plots or overview else []
    for name, paths in plots.items():
        blocks.append(heading(f"Target {name} ({labels.get(name, name)})", 3))
        blocks += [image(p, f"{name}: {plot_caption(p)}") for p in paths]
    if overview:
        blocks.append(
            image(
                Path(overview),
                "accuracy vs p50 latency (bars: 95% CI), all targets, marker area by file size",
            )
        )
    return blocks


def report_blocks(
    rows: list[ReportRow],
    ctx: ReportContext,
    *,
    recommendations: list[Recommendation] | None = None,
    plots: dict[str, list[Path]] | None = None,
    overview: str | Path | None = "tradeoff.png",
    profile: list[Block] | None = None,
) -> list[Block]:
    """The whole single-run report as blocks, in reading order; `overview` is the all-targets plot and
    `profile` the "Where the time goes" section (`edgekd profile`), when the run has one."""
    blocks = [heading(TITLE, 1), *_verdict(ctx.training), para(_measured(rows, ctx)), *_notes(rows, ctx)]
    if recommendations:
        blocks += [heading("Recommendation")] + [para(recommendation_text(r)) for r in recommendations]
    blocks += [heading("All variants"), table(results_table(rows)), para(_PARETO)]
    if lines := runtime_lines(rows):
        blocks += [heading("Which runtime"), *[para(line) for line in lines]]
    if lines := slower_than_fp32_lines(rows, profiled=bool(profile)):
        blocks += [heading("Quantized files slower than fp32"), *[para(line) for line in lines]]
    blocks += int8_method_blocks(rows)
    blocks += profile or []
    blocks += _plots(plots or {}, rows, overview)
    blocks += output_check_blocks(rows)
    best = _best_student(rows, _better_student(ctx.training))
    if best:
        blocks.append(para(best))
    if ctx.training:
        blocks += _training(ctx.training)
    return blocks
