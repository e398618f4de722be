"""Benchmark records: latency statistics and one JSON line per measured file."""

from __future__ import annotations

import csv
import json
import os
import statistics
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.errors import InputError
from benchmarks.files import atomic_path

__all__ = [
    "HIGH_CV",
    "RECORD_VERSION",
    "LatencyStats",
    "BenchRecord",
    "append_record",
    "config_key",
    "read_records",
    "group_rounds",
    "latest_rounds",
    "write_csv",
]

# Above 10 % the run-to-run spread is as large as the gaps we want to rank models by (an int8 file is
# often only 10-30 % faster), so a p50 that noisy needs a rerun (cooldown, fewer background jobs)
# before anyone trusts it. CPU timings on an idle machine usually stay well below this.
HIGH_CV = 0.10
RECORD_VERSION = 1  # results.jsonl records; a reader accepts exactly the versions it knows


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
    cv_high: bool | None = None  # cv > HIGH_CV; None (older records) is filled in from cv

    def __post_init__(self) -> None:
        if self.cv_high is None:
            self.cv_high = self.cv > HIGH_CV

    @classmethod
    def from_values(cls, samples_ms: list[float]) -> LatencyStats:
        """Summarise `samples_ms` (at least one value)."""
        if not samples_ms:
            raise InputError("LatencyStats.from_values: expected at least one sample, got none")
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
    # Added with suites and concurrent streams; defaults let records written before them load.
    streams: int = 1
    round: int = 0  # repeat round, 0-based
    order: int = 0  # position in its round's shuffled order
    suite: str | None = None
    images: int | None = None  # images inferred in the timed region, all streams together
    wall_s: float | None = None  # wall time of the timed region; throughput_ips = images / wall_s
    runs_per_stream: list[int] | None = None
    input_shape: list[int] | None = None  # the shape actually fed
    cpu_affinity: list[int] | None = None  # cores the worker was allowed on, read inside it
    backend_options: dict[str, Any] = field(default_factory=dict)
    backend_info: dict[str, Any] | None = None  # backend.describe(): providers, delegate, XNNPACK, ...
    notes: list[str] = field(default_factory=list)
    # The first test rows' outputs against the bundle's reference outputs (benchmarks/outputs.py).
    output_check: dict[str, Any] | None = None
    # The format's version; records written before it existed read as version 1.
    schema_version: int = RECORD_VERSION

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (latency nested as a dict)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchRecord:
        """Inverse of `to_dict`; unknown keys, or missing keys without a default, raise InputError."""
        _check_record_keys(data)
        values = dict(data)
        for key in ("threads", "batch_size", "streams"):
            if not isinstance(values.get(key, 1), int) or isinstance(values.get(key), bool):
                raise InputError(f"BenchRecord: {key} must be an integer, got {values[key]!r}")
        values["latency"] = _latency_stats(values["latency"])
        return cls(**values)


def _check_record_keys(data: Any) -> None:
    """A JSON object with every required key, no unknown one, and a schema_version this edgekd reads."""
    if not isinstance(data, dict):
        raise InputError(f"BenchRecord: expected a JSON object, got {type(data).__name__}")
    names = {f.name for f in fields(BenchRecord)}
    required = {f.name for f in fields(BenchRecord) if f.default is MISSING and f.default_factory is MISSING}
    missing = sorted(required - data.keys())
    unknown = sorted(data.keys() - names)
    if missing or unknown:
        raise InputError(f"BenchRecord: missing keys {missing}, unknown keys {unknown}")
    if data.get("schema_version", RECORD_VERSION) != RECORD_VERSION:
        raise InputError(
            f"BenchRecord: schema_version {data['schema_version']!r} is not one this edgekd reads "
            f"({RECORD_VERSION})"
        )


def _latency_stats(latency: Any) -> LatencyStats:
    """A record's `latency` object, checked: known keys, every required one, positive percentiles."""
    if not isinstance(latency, dict):
        raise InputError(f"BenchRecord: latency must be an object, got {type(latency).__name__}")
    stats = fields(LatencyStats)
    if unknown := sorted(latency.keys() - {f.name for f in stats}):
        raise InputError(f"BenchRecord: latency: unknown keys {unknown}")  # a list: keys shown with repr
    for key in ("p50", "p90", "p99"):
        if not isinstance(latency.get(key), int | float) or latency[key] <= 0:
            raise InputError(f"BenchRecord: latency.{key} must be positive (ms), got {latency.get(key)!r}")
    required = [f.name for f in stats if f.default is MISSING and f.default_factory is MISSING]
    if missing := sorted(name for name in required if name not in latency):
        raise InputError(f"BenchRecord: latency: missing keys {missing}")
    return LatencyStats(**latency)


def append_record(path: str | os.PathLike[str], record: BenchRecord) -> None:
    """Append `record` as one JSON line and fsync, so a later crash loses nothing measured.

    An exclusive `flock` is held while writing: two `edgekd bench` processes appending to one file
    (say on a network file system, where a large append is not one atomic write) never interleave lines.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX (Windows): appends are unlocked there
        fcntl = None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record.to_dict(), sort_keys=True) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # released when the file is closed
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def drop_torn_tail(path: str | os.PathLike[str]) -> bool:
    """Cut a last line that has no newline (a process killed while appending); True when one was cut.

    Every whole record ends with one (`append_record` writes the line and its newline in one write)."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with open(path, "rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return False
        f.truncate(data.rfind(b"\n") + 1)
    return True


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
                raise InputError(f"{path}:{lineno}: invalid record ({exc})") from exc
    return records


def config_key(rec: BenchRecord) -> tuple[Any, ...]:
    """One configuration: model, format, precision, backend, threads, batch, streams, target."""
    target = rec.target.get("name", rec.target.get("label"))
    return (rec.model, rec.format, rec.precision, rec.backend, rec.threads, rec.batch_size, rec.streams,
            target)  # fmt: skip


def group_rounds(records: list[BenchRecord]) -> list[list[BenchRecord]]:
    """The records of each configuration (its rounds), configurations in first-seen order."""
    groups: dict[tuple[Any, ...], list[BenchRecord]] = {}
    for rec in records:
        groups.setdefault(config_key(rec), []).append(rec)
    return list(groups.values())


def latest_rounds(records: list[BenchRecord]) -> tuple[list[BenchRecord], int]:
    """Each configuration's rounds from its latest `edgekd bench` call, and how many older records were
    left out. `edgekd bench` appends, and one call writes a configuration's rounds in increasing order,
    so a call starts wherever the round number does not go up (also when its round 0 is missing)."""
    latest: set[int] = set()  # ids of the records kept
    for rounds in group_rounds(records):
        starts = [i for i, rec in enumerate(rounds) if i == 0 or rec.round <= rounds[i - 1].round]
        latest.update(id(rec) for rec in rounds[starts[-1] :])
    kept = [rec for rec in records if id(rec) in latest]  # in file order
    return kept, len(records) - len(kept)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}_{key}" if prefix else str(key), item, out)
    elif isinstance(value, list):
        out[prefix] = json.dumps(value)  # lists (cores, notes, providers) stay one cell
    else:
        out[prefix] = "" if value is None else value


def write_csv(results: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Rewrite `path` from the JSONL `results`: one flat row per record (latency_p50, target_kind, ...)."""
    rows = []
    for rec in read_records(results):
        data = rec.to_dict()
        data["latency"].pop("samples_ms")  # thousands of numbers; the JSONL keeps them
        # One column for the hottest zone (throttling shows there) instead of a list of zones.
        temps = [z.get("temp_c") for z in data["machine"].pop("thermal", None) or []]
        data["machine"]["max_temp_c"] = max((t for t in temps if t is not None), default=None)
        flat: dict[str, Any] = {}
        _flatten("", data, flat)
        rows.append(flat)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path
