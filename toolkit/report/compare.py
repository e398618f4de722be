"""Several runs side by side: one p50 / accuracy / peak-memory column group per run, target and setup;
each later group's p50 against the first group's, tested, and the regression gate built on that."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.files import write_text_atomic
from benchmarks.profile import ProfileFile, read_profiles
from toolkit.errors import InputError
from toolkit.report.blocks import Block, blocks_to_markdown, heading, note, para, table
from toolkit.report.html_out import blocks_to_html
from toolkit.report.markdown import machine_facts
from toolkit.report.outputs import output_check_blocks
from toolkit.report.rows import ReportRow, sort_key
from toolkit.report.run import RunData, load_run
from toolkit.report.significance import Difference, compare_rounds, slower_by_more_than
from toolkit.report.table import DASH, Table, fmt_p50, opt
from toolkit.report.time_breakdown import side_by_side_blocks
from toolkit.rundir import RunDir

__all__ = [
    "Regression",
    "build_compare_report",
    "compare_blocks",
    "compare_table",
    "find_regressions",
    "write_compare_report",
]

RowKey = tuple[str, str, str, str]  # (model, format, precision, backend): the same file run the same way
_METRICS = ["p50 ms [95% CI]", "Acc %", "Peak RSS MB"]
_DELTA = "Δ p50 vs first"


@dataclass(frozen=True)
class _Group:
    """The rows of one run measured on one target with one threads/batch setting: one column group."""

    run: RunData
    name: str
    first: ReportRow
    rows: dict[RowKey, ReportRow]


def _key(row: ReportRow) -> RowKey:
    return (row.model, row.format, row.precision, row.backend)


def _names(runs: list[RunData]) -> list[str]:
    """Run directory names, or whole paths when two runs share a name."""
    names = [r.run_dir.name for r in runs]
    return [str(r.run_dir) if names.count(n) > 1 else n for r, n in zip(runs, names, strict=True)]


def _groups(runs: list[RunData]) -> list[_Group]:
    """Split each run by (target, threads, batch), in row order."""
    groups = []
    for run, name in zip(runs, _names(runs), strict=True):
        setups = dict.fromkeys((r.target_name, r.threads, r.batch_size, r.streams) for r in run.rows)
        for setup in setups:
            rows = [r for r in run.rows if (r.target_name, r.threads, r.batch_size, r.streams) == setup]
            groups.append(_Group(run=run, name=name, first=rows[0], rows={_key(r): r for r in rows}))
    return groups


def _label(g: _Group, with_setup: bool) -> str:
    """Column group header: run name · target label · CPU model (· threads, batch when they differ)."""
    r = g.first
    target = r.target_label if r.target_kind == "native" else f"*{r.target_label}*"
    label = f"{g.name} · {target} · {r.cpu_model or 'unknown CPU'}"
    return f"{label} · {r.threads}t b{r.batch_size} s{r.streams}" if with_setup else label


def _metrics(row: ReportRow | None) -> tuple[list[str], list[Any]]:
    """Cells and sort values of one row in one group; dashes when the run lacks the row."""
    if row is None:
        return [DASH] * len(_METRICS), [None] * len(_METRICS)
    cells = [
        fmt_p50(row),
        opt(row.accuracy, lambda a: f"{a * 100:.2f}"),
        opt(row.peak_rss_mb, lambda m: f"{m:.1f}"),
    ]
    return cells, [row.p50_ms, row.accuracy, row.peak_rss_mb]


def _setup(row: ReportRow) -> tuple[Any, ...]:
    return (row.threads, row.batch_size, row.streams)


def _reference(group: _Group, groups: list[_Group], first: RunData) -> _Group | None:
    """The first run's column group with `group`'s threads, batch and streams (any target: comparing
    one file on two devices is what compare is for); None for the first run's own groups."""
    if group.run is first:
        return None
    return next((g for g in groups if g.run is first and _setup(g.first) == _setup(group.first)), None)


def _delta(row: ReportRow | None, ref: ReportRow | None) -> tuple[str, Any]:
    """'+36.5%' (significant), '+1.2% (n.s.)' or '(untested)': `row`'s p50 against its reference's."""
    if row is None or ref is None:
        return DASH, None
    diff = compare_rounds(ref.round_p50s_ms, row.round_p50s_ms)
    return f"{diff.pct:+.1f}%{diff.mark()}", diff.pct


def compare_table(runs: list[RunData]) -> Table:
    """Rows matched on (model, format, precision, backend) across runs, one metric group per column group;
    groups after the first add the p50 change against the first group, tested."""
    groups = _groups(runs)
    every = sorted((r for g in groups for r in g.rows.values()), key=sort_key)
    keys = list(dict.fromkeys(_key(r) for r in every))
    with_setup = len({(g.first.threads, g.first.batch_size, g.first.streams) for g in groups}) > 1
    refs = [_reference(g, groups, runs[0]) for g in groups]
    cells, values = [], []
    for key in keys:
        row_cells = [f"**{key[0]}**" if key[0] == "teacher" else key[0], *key[1:]]
        row_values: list[Any] = [None] * 4
        for g, ref in zip(groups, refs, strict=True):
            c, v = _metrics(g.rows.get(key))
            if g.run is not runs[0]:
                text, value = _delta(g.rows.get(key), ref.rows.get(key) if ref else None)
                c, v = [c[0], text, *c[1:]], [v[0], value, *v[1:]]
            row_cells, row_values = row_cells + c, row_values + v
        cells.append(row_cells)
        values.append(row_values)
    metrics = [_METRICS if g.run is runs[0] else [_METRICS[0], _DELTA, *_METRICS[1:]] for g in groups]
    return Table(
        headers=["Model", "Format", "Precision", "Backend"] + [h for m in metrics for h in m],
        cells=cells,
        values=values,
        numeric=[False] * 4 + [True] * sum(len(m) for m in metrics),
        groups=[("", 4)] + [(_label(g, with_setup), len(m)) for g, m in zip(groups, metrics, strict=True)],
    )


@dataclass(frozen=True)
class Regression:
    """A row of a later run significantly slower than the same row of the first run, beyond the gate."""

    run: str  # the run's name in the compare report
    run_dir: Path
    row: ReportRow
    diff: Difference

    def text(self) -> str:
        r, d = self.row, self.diff
        return (
            f"{self.run}: {r.model} {r.format} {r.precision} ({r.backend}, {r.threads}t b{r.batch_size} "
            f"s{r.streams}, {r.target_name}) p50 {d.pct:+.1f}% (one-sided p = {d.p_value:.3g})"
        )


def _match(row: ReportRow) -> tuple[Any, ...]:
    return (*_key(row), *_setup(row), row.target_name)


def find_regressions(runs: list[RunData], *, max_slowdown_pct: float) -> tuple[list[Regression], int, int]:
    """Rows of each later run significantly slower than the first run's same row (file, setup and target)
    by more than `max_slowdown_pct` (one-sided test against that threshold); also how many rows were
    matched and how many of those could be tested (two rounds or more a side)."""
    first = {_match(r): r for r in runs[0].rows}
    found, matched, tested = [], 0, 0
    for run, name in zip(runs[1:], _names(runs)[1:], strict=True):
        for row in run.rows:
            ref = first.get(_match(row))
            if ref is None:
                continue
            matched += 1
            diff = slower_by_more_than(ref.round_p50s_ms, row.round_p50s_ms, max_slowdown_pct)
            tested += diff.tested
            if diff.significant:
                found.append(Regression(run=name, run_dir=run.run_dir, row=row, diff=diff))
    return found, matched, tested


def compare_blocks(runs: list[RunData]) -> list[Block]:
    """The compare report: what each column group measured, notes, then the matched table."""
    groups = _groups(runs)
    blocks = [
        heading(f"edgekd compare: {len(runs)} runs", 1),
        para(
            "Rows are matched on model, format, precision and backend; each column group is one run on one "
            "target (header: run · target · CPU). – means that run has no such row. *Δ p50 vs first* is "
            "the change against the first run's column group with the same threads, batch and streams; "
            "(n.s.) marks a change Welch's t-test on the rounds' log p50s does not find significant "
            "(p ≥ 0.05), (untested) a side with one round."
        ),
    ]
    for run, name in zip(runs, _names(runs), strict=True):
        dup = f" {run.superseded} older duplicate record(s) superseded." if run.superseded else ""
        blocks.append(para(f"**{name}** (`{run.run_dir}`): {machine_facts(run.context)}{dup}"))
    labels = list(
        dict.fromkeys(f"*{g.first.target_label}*" for g in groups if g.first.target_kind != "native")
    )
    if labels:
        blocks.append(
            note(
                f"Column groups on {', '.join(labels)} were measured under emulation or resource limits: "
                "they describe that setup, not the device it imitates."
            )
        )
    blocks += [table(compare_table(runs)), *output_check_blocks([r for run in runs for r in run.rows])]
    return blocks + side_by_side_blocks(_profiles(runs))


def _profiles(runs: list[RunData]) -> list[tuple[str, ProfileFile]]:
    """Every profile the runs hold (`RUN/profile`, and each board's under it), named run · target."""
    found = []
    for run, name in zip(runs, _names(runs), strict=True):
        for path in RunDir(run.run_dir).all_profiles():
            data = read_profiles(path)
            found.append((f"{name} · {data.target.get('label') or data.target.get('kind', '?')}", data))
    return found


def build_compare_report(run_dirs: list[Path], *, out_dir: Path) -> Path:
    """Write compare.md and compare.html for `run_dirs` into `out_dir`; return the Markdown path."""
    if len(run_dirs) < 2:
        raise InputError(f"compare needs at least two run directories, got {len(run_dirs)}")
    return write_compare_report([load_run(Path(d)) for d in run_dirs], out_dir=out_dir)


def write_compare_report(runs: list[RunData], *, out_dir: Path) -> Path:
    """Write compare.md and compare.html for runs already loaded; return the Markdown path."""
    blocks = compare_blocks(runs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path = out_dir / "compare.md"
    write_text_atomic(md_path, blocks_to_markdown(blocks))
    title = blocks[0].text
    write_text_atomic(out_dir / "compare.html", blocks_to_html(blocks, title=title))
    return md_path
