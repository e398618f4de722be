"""Readers for the files a report is built from: benchmark records, bundle manifest, training summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.manifest import ManifestKey, ModelEntry
from benchmarks.manifest import read_manifest as read_typed_manifest
from toolkit.errors import DataError, RunDirError

__all__ = ["ManifestKey", "config_key", "latest_records", "read_results", "read_manifest", "read_summary"]


_REQUIRED = {"model": str, "format": str, "precision": str, "backend": str, "target": dict, "latency": dict}
_LATENCY_KEYS = ("p50", "p90", "p99")


def _check_record(rec: Any) -> None:
    """Raise ValueError when `rec` lacks a field the report needs or has it with the wrong type."""
    if not isinstance(rec, dict):
        raise ValueError(f"expected a JSON object, got {type(rec).__name__}")
    for key, kind in _REQUIRED.items():
        if not isinstance(rec.get(key), kind):
            raise ValueError(f"field {key!r} must be {kind.__name__}, got {rec.get(key)!r}")
    if not isinstance(rec.get("threads"), int) or isinstance(rec.get("threads"), bool):
        raise ValueError(f"field 'threads' must be int, got {rec.get('threads')!r}")
    for key in _LATENCY_KEYS:
        value = rec["latency"].get(key)
        if not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"latency.{key} must be positive (ms), got {value!r}")


def read_results(path: Path) -> list[dict[str, Any]]:
    """Read benchmark records from a JSON-lines file; a bad line raises `DataError("path:line: ...")`."""
    if not path.is_file():
        raise RunDirError(f"{path}: benchmark results not found (run `edgekd bench` first)")
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                _check_record(rec)
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                raise DataError(f"{path}:{lineno}: invalid benchmark record ({exc})") from exc
            records.append(rec)
    if not records:
        raise DataError(f"{path}: no benchmark records")
    return records


def config_key(rec: dict[str, Any]) -> tuple[Any, ...]:
    """One configuration: model, format, precision, backend, threads, batch, streams, target."""
    target = rec["target"]
    return (
        rec["model"],
        rec["format"],
        rec["precision"],
        rec["backend"],
        rec["threads"],
        rec.get("batch_size"),
        rec.get("streams", 1),
        target.get("name", target.get("label")),
    )


def latest_records(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The last record of each `config_key` (`edgekd bench` appends), and how many older ones were dropped."""
    latest = {config_key(rec): i for i, rec in enumerate(records)}
    kept = [rec for i, rec in enumerate(records) if latest[config_key(rec)] == i]
    return kept, len(records) - len(kept)


def _read_json(path: Path) -> Any:
    """Parse one JSON file, naming the file in any error."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(f"{path}: invalid JSON ({exc})") from exc


def read_manifest(path: Path) -> dict[ManifestKey, ModelEntry]:
    """The bundle manifest's typed model entries, keyed by (name, format, precision)."""
    if not path.is_file():
        raise RunDirError(f"{path}: bundle manifest not found (run `edgekd export` first)")
    try:
        return read_typed_manifest(path).entries_by_key()
    except ValueError as exc:
        raise DataError(str(exc)) from None


def read_summary(path: Path) -> dict[str, dict[str, Any]] | None:
    """Read the optional training summary: per-model entries (with `test_accuracy`) and `kd_vs_scratch`."""
    if not path.is_file():
        return None
    data = _read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return {
        k: v
        for k, v in data.items()
        if isinstance(v, dict) and ("test_accuracy" in v or (k == "kd_vs_scratch" and "per_seed" in v))
    }
