"""Readers for the files a report is built from: benchmark records, bundle manifest, training summary."""

from __future__ import annotations

from pathlib import Path

from benchmarks.manifest import ManifestKey, ModelEntry
from benchmarks.manifest import read_manifest as read_typed_manifest
from benchmarks.records import BenchRecord, read_records
from toolkit.errors import DataError, RunDirError
from toolkit.rundir.summary import DistillSummary

__all__ = ["ManifestKey", "read_results", "read_manifest", "read_summary"]


def read_results(path: Path) -> list[BenchRecord]:
    """Records read through benchmarks.records; a bad line raises `DataError("path:line: ...")`."""
    if not path.is_file():
        raise RunDirError(f"{path}: benchmark results not found (run `edgekd bench` first)")
    try:
        records = read_records(path)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    if not records:
        raise DataError(f"{path}: no benchmark records")
    return records


def read_manifest(path: Path) -> dict[ManifestKey, ModelEntry]:
    """The bundle manifest's typed model entries, keyed by (name, format, precision)."""
    if not path.is_file():
        raise RunDirError(f"{path}: bundle manifest not found (run `edgekd export` first)")
    try:
        return read_typed_manifest(path).entries_by_key()
    except ValueError as exc:
        raise DataError(str(exc)) from None


def read_summary(path: Path) -> DistillSummary | None:
    """The optional training summary (toolkit.rundir.summary), typed; None when the run has none."""
    from toolkit.rundir.summary import read_summary as read_typed_summary

    if not path.is_file():
        return None
    try:
        return read_typed_summary(path)
    except ValueError as exc:
        raise DataError(str(exc)) from None
