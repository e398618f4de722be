"""Records → rows: one flat row per benchmark record, joined with the manifest and compared to the teacher."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from benchmarks.manifest import ManifestKey, ModelEntry
from benchmarks.records import BenchRecord
from toolkit.report.pareto import pareto_front

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


def _row_from_record(rec: BenchRecord, manifest: dict[ManifestKey, ModelEntry]) -> ReportRow:
    """Flatten one record and join it with its manifest entry on (model, format, precision)."""
    entry = manifest.get((rec.model, rec.format, rec.precision))
    parity = entry.parity if entry is not None else None
    target, latency = rec.target, rec.latency
    # The record's accuracy is measured on the benchmarked file; parity accuracy is the export-time fallback.
    from_record = rec.accuracy is not None
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
        accuracy=rec.accuracy if from_record else (parity.accuracy if parity else None),
        n_accuracy=rec.n_accuracy if from_record else (parity.n if parity else None),
        top1_agreement=parity.top1_agreement if parity else None,
        parity_passed=parity.passed if parity else None,
        p50_ms=float(latency.p50),
        p90_ms=float(latency.p90),
        p99_ms=float(latency.p99),
        throughput_ips=rec.throughput_ips,
        peak_rss_mb=rec.peak_rss_mb,
        cpu_model=(rec.machine or {}).get("cpu_model"),
    )


def _ratio(base: float | None, value: float | None) -> float | None:
    """`base / value`, or None when either is missing or zero."""
    return base / value if base and value else None


def _compare(row: ReportRow, base: ReportRow | None) -> ReportRow:
    """Fill speedup, size, memory and accuracy comparisons of `row` against `base` (None leaves them None)."""
    if base is None:
        return row
    delta = None
    if base.accuracy is not None and row.accuracy is not None:
        # Rounded to hide float noise (0.90 - 0.91); a micro-point is far below any test set's resolution.
        delta = round((row.accuracy - base.accuracy) * 100, 6)
    return dataclasses.replace(
        row,
        is_baseline=row is base,
        speedup=base.p50_ms / row.p50_ms,
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
    """One row per record, sorted for the table, compared to its teacher fp32 baseline, fronts marked."""
    rows = [_row_from_record(rec, manifest) for rec in records]
    baselines: dict[tuple[Any, ...], ReportRow] = {}
    for row in rows:
        if row.role == "teacher" and row.precision == "fp32":
            # A repeated teacher run (when records were not passed through `latest_records`): the latest wins.
            baselines[baseline_key(row)] = row
    compared = [_compare(row, baselines.get(baseline_key(row))) for row in rows]
    return mark_pareto(sorted(compared, key=sort_key))
