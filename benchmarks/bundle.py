"""Benchmark every model file of an edgekd bundle (reads only `manifest.json` and the files it names)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.backends import available, backend_for
from benchmarks.harness import BenchConfig, BenchmarkError, run_benchmark
from benchmarks.records import BenchRecord, append_record

__all__ = ["BundleRun", "read_manifest", "bundle_configs", "run_bundle"]


def read_manifest(bundle: str | Path) -> dict:
    """Parse `bundle/manifest.json`; a missing or malformed file raises `ValueError` naming it."""
    path = Path(bundle) / "manifest.json"
    if not path.is_file():
        raise ValueError(f"{path}: not found (is {bundle} an edgekd bundle? run `edgekd export` first)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from e
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), list):
        raise ValueError(f"{path}: expected an object with a 'models' list")
    return manifest


def bundle_configs(
    bundle: str | Path, *, threads: list[int], accuracy: bool = True, **protocol
) -> Iterator[BenchConfig]:
    """One `BenchConfig` per (model file, thread count) ; `protocol` sets warmup, min_runs, ..."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    test = manifest.get("test_data")
    data_path = str(bundle / test["file"]) if accuracy and test else None
    pre = manifest.get("input", {}).get("preprocessing")
    for entry in manifest["models"]:
        for t in threads:
            yield BenchConfig(
                model_path=str(bundle / entry["file"]),
                threads=t,
                model=entry["name"],
                role=entry.get("role", "unknown"),
                format=entry["format"],
                precision=entry["precision"],
                data_path=data_path,
                preprocessing=pre,
                **protocol,
            )


@dataclass
class BundleRun:
    """What `run_bundle` did: records measured, files that failed, files skipped (runtime missing)."""

    records: list[BenchRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def run_bundle(
    bundle: str | Path,
    results: str | Path,
    *,
    threads: list[int],
    accuracy: bool = True,
    on_result: Callable[[BenchRecord], None] | None = None,
    **protocol,
) -> BundleRun:
    """Benchmark each file, appending each record to `results` (JSONL) as soon as it is measured.

    A file that fails is listed in `errors` and the others are still measured; a file whose runtime is
    not installed here (say a .pt2 on a board without torch) is listed in `skipped`.
    """
    out = BundleRun()
    for config in list(bundle_configs(bundle, threads=threads, accuracy=accuracy, **protocol)):
        backend = config.backend or backend_for(config.model_path)
        if not available(backend):
            out.skipped.append(f"{config.model_path}: skipped, the {backend} runtime is not installed")
            continue
        try:
            record = run_benchmark(config)
        except BenchmarkError as e:
            out.errors.append(str(e))
            continue
        append_record(results, record)
        out.records.append(record)
        if on_result is not None:
            on_result(record)
    return out
