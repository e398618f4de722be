"""Benchmark records: latency statistics and one JSON line per measured file."""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LatencyStats", "BenchRecord", "append_record", "read_records"]


@dataclass
class LatencyStats:
    """Summary of per-run latencies in milliseconds; keeps the raw samples."""

    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    stdev: float
    min: float
    max: float
    cv: float
    samples_ms: list[float] = field(default_factory=list, repr=False)

    @classmethod
    def from_values(cls, samples_ms: list[float]) -> LatencyStats:
        """Summarise `samples_ms` (at least one value)."""
        if not samples_ms:
            raise ValueError("LatencyStats.from_values: expected at least one sample, got none")
        values = [float(v) for v in samples_ms]
        ordered = sorted(values)
        mean = statistics.fmean(values)
        # numpy's default (linear) method, so reports agree with np.percentile on the raw samples.
        p50, p90, p99 = (float(p) for p in np.percentile(values, [50, 90, 99]))
        # Sample stdev (n-1); a single run has no spread to estimate.
        stdev = statistics.stdev(values) if len(values) > 1 else 0.0
        return cls(
            count=len(values),
            mean=mean,
            p50=p50,
            p90=p90,
            p99=p99,
            stdev=stdev,
            min=ordered[0],
            max=ordered[-1],
            cv=stdev / mean if mean > 0 else 0.0,
            samples_ms=values,
        )

    @property
    def total_ms(self) -> float:
        """Sum of all timed runs."""
        return sum(self.samples_ms)


@dataclass
class BenchRecord:
    """Everything measured for one model file on one machine, with the protocol used."""

    model: str
    role: str
    file: str
    format: str
    precision: str
    backend: str
    target: dict[str, Any]
    threads: int
    batch_size: int
    load_ms: float
    first_run_ms: float
    latency: LatencyStats
    throughput_ips: float
    peak_rss_mb: float | None
    baseline_rss_mb: float | None
    rss_increase_mb: float | None
    file_size_bytes: int
    accuracy: float | None
    n_accuracy: int | None
    machine: dict[str, Any]
    runtime_version: str | None
    timestamp: str
    edgekd_version: str | None
    warmup: int
    protocol: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (latency nested as a dict)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchRecord:
        """Inverse of `to_dict`; missing or unknown keys raise ValueError."""
        if not isinstance(data, dict):
            raise ValueError(f"BenchRecord: expected a JSON object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        missing = sorted(names - data.keys())
        unknown = sorted(data.keys() - names)
        if missing or unknown:
            raise ValueError(f"BenchRecord: missing keys {missing}, unknown keys {unknown}")
        values = dict(data)
        latency = values["latency"]
        if not isinstance(latency, dict):
            raise ValueError(f"BenchRecord: latency must be an object, got {type(latency).__name__}")
        values["latency"] = LatencyStats(**latency)
        return cls(**values)


def append_record(path: str | os.PathLike[str], record: BenchRecord) -> None:
    """Append `record` as one JSON line and fsync, so a later crash loses nothing measured."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record.to_dict(), sort_keys=True) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_records(path: str | os.PathLike[str]) -> list[BenchRecord]:
    """Read every record from a JSON-lines file; blank lines are skipped."""
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                records.append(BenchRecord.from_dict(json.loads(line)))
            except (ValueError, TypeError) as exc:
                # json.JSONDecodeError is a ValueError; TypeError comes from wrong LatencyStats keys.
                raise ValueError(f"{path}:{lineno}: invalid record ({exc})") from exc
    return records
