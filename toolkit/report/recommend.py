"""Per target: the fastest and the smallest student whose accuracy stays within a budget of the teacher."""

from __future__ import annotations

import math
from dataclasses import dataclass

from toolkit.errors import InputError
from toolkit.report.rows import ReportRow
from toolkit.report.significance import compare_rounds
from toolkit.report.table import fmt_p50, fmt_size

__all__ = ["Recommendation", "recommend", "recommendation_text"]


@dataclass(frozen=True)
class Recommendation:
    """The picks for one target under an accuracy budget (points below the teacher); None when none fit."""

    target_name: str
    target_label: str
    target_kind: str
    max_accuracy_drop: float
    teacher: ReportRow | None
    fastest: ReportRow | None
    smallest: ReportRow | None
    tied: tuple[ReportRow, ...] = ()  # rows whose p50 is not significantly slower than the fastest's


def _drop_pts(row: ReportRow, teacher: ReportRow) -> float:
    """Accuracy points `row` loses against `teacher`, rounded to hide float noise."""
    return round((teacher.accuracy - row.accuracy) * 100, 6)  # type: ignore[operator]


def _reference(rows: list[ReportRow]) -> ReportRow | None:
    """The most accurate teacher row (fp32 preferred) of one target: the accuracy the budget counts from."""
    teachers = [r for r in rows if r.role == "teacher" and r.accuracy is not None]
    fp32 = [r for r in teachers if r.precision == "fp32"] or teachers
    return max(fp32, key=lambda r: r.accuracy or 0.0, default=None)


def _fastest(fits: list[ReportRow]) -> tuple[ReportRow | None, tuple[ReportRow, ...]]:
    """The fastest qualifying row and the rows tied with it. Rows whose gap to the lowest p50 the test
    finds not significant are tied; among them the smallest file wins, then the most accurate (a KD
    student and its scratch twin share size and speed), then the p50: a latency gap the test cannot
    confirm decides nothing. A gap that could not be tested (one round) is no tie: p50 decides. A row
    flagged unstable wins on latency only where no stable row qualifies."""
    if not fits:
        return None, ()
    quickest = min(fits, key=lambda r: (r.unstable, r.p50_ms, r.size_bytes or 0))
    tied = [r for r in fits if r is quickest or _tied(quickest, r)]
    pick = min(tied, key=_tie_break)
    return pick, tuple(r for r in tied if r is not pick)


def _tie_break(row: ReportRow) -> tuple[bool, float, float, float]:
    size = row.size_bytes if row.size_bytes is not None else math.inf
    return (row.unstable, size, -(row.accuracy or 0.0), row.p50_ms)


def _tied(a: ReportRow, b: ReportRow) -> bool:
    diff = compare_rounds(a.round_p50s_ms, b.round_p50s_ms)
    return diff.tested and not diff.significant


def _pick(rows: list[ReportRow], *, max_accuracy_drop: float) -> Recommendation:
    """The recommendation for the rows of a single target."""
    first, teacher = rows[0], _reference(rows)
    fits = []
    if teacher is not None:
        fits = [
            r
            for r in rows
            if r.role != "teacher"
            and r.accuracy is not None
            and r.parity_passed is not False  # a file that does not reproduce its model is not shipped
            and _drop_pts(r, teacher) <= max_accuracy_drop
        ]
    sized = [r for r in fits if r.size_bytes is not None]
    fastest, tied = _fastest(fits)
    return Recommendation(
        target_name=first.target_name,
        target_label=first.target_label,
        target_kind=first.target_kind,
        max_accuracy_drop=max_accuracy_drop,
        teacher=teacher,
        fastest=fastest,
        smallest=min(sized, key=lambda r: (r.size_bytes, -(r.accuracy or 0.0), r.p50_ms), default=None),
        tied=tied,
    )


def recommend(rows: list[ReportRow], *, max_accuracy_drop: float = 1.0) -> list[Recommendation]:
    """One recommendation per target, in the order targets first appear in `rows`."""
    if max_accuracy_drop < 0:
        raise InputError(f"max_accuracy_drop must be >= 0 accuracy points, got {max_accuracy_drop}")
    targets = list(dict.fromkeys(r.target_name for r in rows))
    return [
        _pick([r for r in rows if r.target_name == t], max_accuracy_drop=max_accuracy_drop) for t in targets
    ]


def _variant(row: ReportRow) -> str:
    """'**student_kd** onnx int8 (onnxruntime, 1 thread, batch 1)'."""
    threads = f"{row.threads} thread{'s' if row.threads != 1 else ''}"
    batch = f", batch {row.batch_size}" if row.batch_size is not None else ""
    return f"**{row.model}** {row.format} {row.precision} ({row.backend}, {threads}{batch})"


def _facts(row: ReportRow, teacher: ReportRow) -> str:
    """Accuracy (against the teacher's), p50 and size of a picked row."""
    acc, gain = (row.accuracy or 0.0) * 100, -_drop_pts(row, teacher)
    vs = f"{gain:.2f} pts above the teacher" if gain > 0 else f"{gain:+.2f} pts"
    return f"{acc:.2f}% ({vs}), p50 {fmt_p50(row)} ms, {fmt_size(row.size_bytes)}"


def _tie_text(tied: tuple[ReportRow, ...]) -> str:
    """' (its p50 is statistically tied with N other row(s), so the smallest of them is named)'."""
    if not tied:
        return ""
    return (
        f" (statistically tied on p50 with {len(tied)} other row{'s' if len(tied) != 1 else ''}, "
        "so the smallest file among them is named)"
    )


def _pick_text(rec: Recommendation, teacher: ReportRow) -> str:
    """'the fastest is X (facts); the smallest file is Y (facts)', merged when X is Y."""
    fastest, smallest = rec.fastest, rec.smallest
    ties = _tie_text(rec.tied)
    if smallest is fastest:
        return f"the fastest and smallest file is {_variant(fastest)}{ties}: {_facts(fastest, teacher)}"
    tail = (
        f"the smallest file is {_variant(smallest)}: {_facts(smallest, teacher)}"
        if smallest is not None
        else "no qualifying row has a file size"
    )
    return f"the fastest is {_variant(fastest)}{ties}: {_facts(fastest, teacher)}; {tail}"


def recommendation_text(rec: Recommendation) -> str:
    """One Markdown-inline line: target, teacher reference and the picks, or why there are none."""
    where = rec.target_label if rec.target_kind == "native" else f"*{rec.target_label}*, {rec.target_kind}"
    head = f"**{rec.target_name}** ({where})"
    if rec.teacher is None:
        return f"{head}: no teacher row with an accuracy on this target, so no reference to count from."
    t = rec.teacher
    budget = (
        f"within {rec.max_accuracy_drop:g} accuracy point(s) of the teacher "
        f"({t.format} {t.precision}, {(t.accuracy or 0.0) * 100:.2f}%)"
    )
    if rec.fastest is None:
        return f"{head}: no student qualifies {budget}; every student with an accuracy loses more."
    return f"{head}: {budget}, {_pick_text(rec, t)}."
