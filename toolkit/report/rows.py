"""Records → rows: one flat row per benchmark record, joined with the manifest and compared to the teacher."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.manifest import LayoutSearch, ManifestKey, ModelEntry, QatRecord
from benchmarks.records import BenchRecord, group_rounds
from benchmarks.stats import STABLE_INFLUENCE, PooledLatency, pool_latency, ratio_interval, round_influence
from toolkit.report.pareto import pareto_front
from toolkit.report.significance import Difference, compare_rounds

__all__ = ["ReportRow", "build_rows", "baseline_key", "sort_key", "mark_pareto"]

_PRECISION_ORDER = {"fp32": 0, "fp16": 1, "int8": 2, "dynamic-int8": 3}


@dataclass(frozen=True)
class ReportRow:
    """One benchmarked file with its measurements and its ratios to the teacher fp32 baseline."""

    model: str
    role: str
    format: str
    precision: str
    backend: str
    threads: int
    batch_size: int | None
    streams: int
    target_name: str
    target_kind: str
    target_label: str
    params: int | None
    macs: int | None
    size_bytes: int | None
    accuracy: float | None
    n_accuracy: int | None
    top1_agreement: float | None
    parity_passed: bool | None
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput_ips: float | None
    peak_rss_mb: float | None
    cpu_model: str | None = None
    is_baseline: bool = False
    speedup: float | None = None
    size_ratio: float | None = None
    accuracy_delta_pts: float | None = None
    memory_ratio: float | None = None
    pareto: str = ""  # "lat", "size", "lat+size" or "": which accuracy fronts of its target the row is on
    # Rounds (worker processes) pooled into p50_ms: their p50s, the 95 % interval, how well they agree.
    round_p50s_ms: tuple[float, ...] = ()
    p50_ci_ms: tuple[float, float] | None = None
    spread: float = 0.0
    bimodal: bool = False
    speedup_ci: tuple[float, float] | None = None
    baseline_round_p50s_ms: tuple[float, ...] | None = None  # the baseline's rounds, for `vs_baseline`
    output_check: dict[str, Any] | None = None  # the record's outputs vs the export machine's (bench)
    layout_search: LayoutSearch | None = None  # the manifest's int8 layout search, where export ran one
    qat: QatRecord | None = None  # the manifest's PTQ vs QAT-KD record of a student's int8 file

    @property
    def rounds(self) -> int:
        return len(self.round_p50s_ms)

    @property
    def vs_baseline(self) -> Difference | None:
        """This row's p50 against its baseline's, tested on the rounds (scipy: the report extra); ratio =
        speedup. Computed when asked, so `edgekd bench` on a board without scipy can still build rows."""
        if self.baseline_round_p50s_ms is None or self.is_baseline:
            return None
        return compare_rounds(self.round_p50s_ms, self.baseline_round_p50s_ms)

    @property
    def influence(self) -> float:
        """How far leaving out one round moves the pooled p50 (benchmarks.stats.round_influence)."""
        return round_influence(self.round_p50s_ms)

    @property
    def unstable(self) -> bool:
        """One round decides the pooled p50 by more than benchmarks.stats.STABLE_INFLUENCE."""
        return self.influence > STABLE_INFLUENCE


def baseline_key(row: ReportRow) -> tuple[Any, ...]:
    """What a teacher fp32 row must share to be `row`'s baseline: format, backend, threads, batch, streams,
    target."""
    return (row.format, row.backend, row.threads, row.batch_size, row.streams, row.target_name)


def sort_key(row: ReportRow) -> tuple[Any, ...]:
    """Table order: format, backend, precision (fp32 first), teacher first, then model, threads, target."""
    return (
        row.format,
        row.backend,
        _PRECISION_ORDER.get(row.precision, len(_PRECISION_ORDER)),
        row.precision,
        row.role != "teacher",
        row.model,
        row.threads,
        row.batch_size or 0,
        row.streams,
        row.target_name,
    )


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.median(known)) if known else None


def _throughput(rounds: list[BenchRecord]) -> float | None:
    """Images / wall time over all rounds; the rounds' median rate when a record lacks either count."""
    if all(r.images is not None and r.wall_s for r in rounds):
        return sum(r.images or 0 for r in rounds) / sum(r.wall_s or 0.0 for r in rounds)
    return _median([r.throughput_ips for r in rounds])


def _row_from_rounds(
    rounds: list[BenchRecord], pooled: PooledLatency, manifest: dict[ManifestKey, ModelEntry]
) -> ReportRow:
    """One configuration's rounds flattened, joined with its manifest entry on (model, format, precision)."""
    rec = rounds[0]
    entry = manifest.get((rec.model, rec.format, rec.precision))
    parity = entry.parity if entry is not None else None
    target = rec.target
    # The record's accuracy is measured on the benchmarked file; parity accuracy is the export-time fallback.
    measured = next((r for r in rounds if r.accuracy is not None), None)
    checked = next((r.output_check for r in rounds if r.output_check is not None), None)
    size = rec.file_size_bytes or (entry.size_bytes if entry is not None else None)
    return ReportRow(
        model=rec.model,
        role=rec.role if rec.role != "unknown" else ("teacher" if rec.model == "teacher" else "student"),
        format=rec.format,
        precision=rec.precision,
        backend=rec.backend,
        threads=rec.threads,
        batch_size=rec.batch_size,
        streams=rec.streams,
        target_name=str(target.get("name", "")),
        target_kind=str(target.get("kind", "native")),
        target_label=str(target.get("label") or target.get("name") or ""),
        params=entry.params if entry is not None else None,
        macs=entry.macs if entry is not None else None,
        size_bytes=int(size) if size is not None else None,
        accuracy=measured.accuracy if measured else (parity.accuracy if parity else None),
        n_accuracy=measured.n_accuracy if measured else (parity.n if parity else None),
        top1_agreement=parity.top1_agreement if parity else None,
        parity_passed=parity.passed if parity else None,
        p50_ms=pooled.p50_ms,
        p90_ms=_median([r.latency.p90 for r in rounds]) or pooled.p50_ms,
        p99_ms=_median([r.latency.p99 for r in rounds]) or pooled.p50_ms,
        throughput_ips=_throughput(rounds),
        peak_rss_mb=max((r.peak_rss_mb for r in rounds if r.peak_rss_mb is not None), default=None),
        cpu_model=(rec.machine or {}).get("cpu_model"),
        round_p50s_ms=pooled.round_p50s_ms,
        p50_ci_ms=(pooled.ci_low_ms, pooled.ci_high_ms),
        spread=pooled.spread,
        bimodal=pooled.bimodal,
        output_check=checked,
        layout_search=entry.quantization.layout_search if entry is not None and entry.quantization else None,
        qat=entry.quantization.qat if entry is not None and entry.quantization else None,
    )


def _ratio(base: float | None, value: float | None) -> float | None:
    """`base / value`, or None when either is missing or zero."""
    return base / value if base and value else None


def _compare(
    row: ReportRow, base: ReportRow | None, pools: tuple[PooledLatency, PooledLatency] | None
) -> ReportRow:
    """Fill speedup (with its interval and test), size, memory and accuracy comparisons of `row` against
    `base` (None leaves them None); `pools` are (base's, row's) pooled latencies."""
    if base is None or pools is None:
        return row
    delta = None
    if base.accuracy is not None and row.accuracy is not None:
        # Rounded to hide float noise (0.90 - 0.91); a micro-point is far below any test set's resolution.
        delta = round((row.accuracy - base.accuracy) * 100, 6)
    return dataclasses.replace(
        row,
        is_baseline=row is base,
        speedup=base.p50_ms / row.p50_ms,
        speedup_ci=None if row is base else ratio_interval(*pools),
        baseline_round_p50s_ms=base.round_p50s_ms,
        size_ratio=_ratio(base.size_bytes, row.size_bytes),
        accuracy_delta_pts=delta,
        memory_ratio=_ratio(base.peak_rss_mb, row.peak_rss_mb),
    )


def _fronts(rows: list[ReportRow], cost: str) -> set[int]:
    """Indices of `rows` on the (max accuracy, min `cost`) front of their own target."""
    on: set[int] = set()
    for target in {r.target_name for r in rows}:
        idx = [
            i
            for i, r in enumerate(rows)
            if r.target_name == target and r.accuracy is not None and getattr(r, cost) is not None
        ]
        flags = pareto_front([(rows[i].accuracy, getattr(rows[i], cost)) for i in idx])
        on.update(i for i, flag in zip(idx, flags, strict=True) if flag)
    return on


def mark_pareto(rows: list[ReportRow]) -> list[ReportRow]:
    """Set each row's `pareto` to its fronts: accuracy vs p50 latency ("lat"), vs file size ("size")."""
    lat, size = _fronts(rows, "p50_ms"), _fronts(rows, "size_bytes")
    names = [("lat" if i in lat else "", "size" if i in size else "") for i in range(len(rows))]
    return [
        dataclasses.replace(r, pareto="+".join(n for n in pair if n))
        for r, pair in zip(rows, names, strict=True)
    ]


def build_rows(records: list[BenchRecord], manifest: dict[ManifestKey, ModelEntry]) -> list[ReportRow]:
    """One row per configuration (its rounds pooled), sorted for the table, compared to its teacher fp32
    baseline, fronts marked. Pass one `edgekd bench` call's records (see `latest_rounds`)."""
    pooled = []
    for i, rounds in enumerate(group_rounds(records)):
        # A seed per configuration: the same stream for two of them would correlate their bootstraps
        # and shrink every ratio's interval to nothing.
        latency = pool_latency([r.latency.samples_ms or [r.latency.p50] for r in rounds], seed=i)
        pooled.append((_row_from_rounds(rounds, latency, manifest), latency))
    baselines = {
        baseline_key(row): (row, latency)
        for row, latency in pooled
        if row.role == "teacher" and row.precision == "fp32"
    }
    compared = []
    for row, latency in pooled:
        base = baselines.get(baseline_key(row))
        compared.append(_compare(row, base and base[0], base and (base[1], latency)))
    return mark_pareto(sorted(compared, key=sort_key))
