"""Run-to-run repeatability and memory of the harness on a bundle's teacher and KD student ONNX fp32 files.

    python scripts/bench_repeatability.py BUNDLE_DIR [--models teacher,student_kd] [--min-time-s 2]

Each file is measured by `run_benchmark` twice in a row, each time in a fresh worker subprocess as
`edgekd bench` does; the target is p50s within 10% of each other. Peak RSS and the increase over the
worker's baseline show that the bigger model costs more memory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.bundle import read_manifest
from benchmarks.harness import BenchConfig, run_benchmark
from benchmarks.records import BenchRecord

TARGET_PCT = 10.0


def measure_twice(bundle: Path, entry: dict, *, threads: int, min_time_s: float) -> list[BenchRecord]:
    """Two back-to-back records for one manifest entry, without the accuracy pass."""
    config = BenchConfig(
        model_path=str(bundle / entry["file"]),
        threads=threads,
        min_time_s=min_time_s,
        model=entry["name"],
        role=entry.get("role", "unknown"),
        format=entry["format"],
        precision=entry["precision"],
    )
    return [run_benchmark(config), run_benchmark(config)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bundle", type=Path, help="bundle folder with manifest.json")
    parser.add_argument("--models", default="teacher,student_kd", help="comma-separated model names")
    parser.add_argument("--min-time-s", type=float, default=2.0, help="timed seconds per run")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    names = args.models.split(",")
    by_name = {
        e["name"]: e
        for e in read_manifest(args.bundle)["models"]
        if e["format"] == "onnx" and e["precision"] == "fp32"
    }
    missing = [n for n in names if n not in by_name]
    if missing:
        parser.error(f"{args.bundle}: no ONNX fp32 file for models {missing}")

    runs = {
        n: measure_twice(args.bundle, by_name[n], threads=args.threads, min_time_s=args.min_time_s)
        for n in names
    }
    print(f"{'model':<16} {'runs':>6} {'p50 #1 ms':>10} {'p50 #2 ms':>10} {'diff %':>7}")
    worst = 0.0
    for name, (a, b) in runs.items():
        diff = (b.latency.p50 - a.latency.p50) / a.latency.p50 * 100
        worst = max(worst, abs(diff))
        print(f"{name:<16} {a.latency.count:>6} {a.latency.p50:>10.4f} {b.latency.p50:>10.4f} {diff:>+7.1f}")
    verdict = "meets" if worst <= TARGET_PCT else "misses"
    print(f"largest p50 difference {worst:.1f}%: {verdict} the target <= {TARGET_PCT:.0f}%")
    print()
    print(
        f"{'model':<16} {'run':>3} {'size MB':>8} {'baseline MB':>12} {'peak RSS MB':>12} {'increase MB':>12}"
    )
    for name, records in runs.items():
        for i, r in enumerate(records, 1):
            print(
                f"{name:<16} {i:>3} {r.file_size_bytes / 2**20:>8.2f} {r.baseline_rss_mb:>12.1f} "
                f"{r.peak_rss_mb:>12.1f} {r.rss_increase_mb:>12.1f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
