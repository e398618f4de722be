"""Rows → CSV: every row field, one line per benchmarked file."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

from benchmarks.files import atomic_path
from toolkit.report.rows import ReportRow

__all__ = ["save_csv"]


def save_csv(rows: list[ReportRow], path: Path) -> Path:
    """Write all fields of `rows` to `path` with a header line; missing values are empty cells."""
    names = [f.name for f in dataclasses.fields(ReportRow)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in dataclasses.asdict(row).items()})
    return path
