"""How much the harness's timing path adds over a bare inference loop, per ONNX/TFLite file of a bundle.

    python scripts/bench_harness_overhead.py BUNDLE_DIR [--models teacher,student_kd] [--rounds 20]

Both arms run in this process on one loaded model and one prepared input, alternating A/B and B/A
each round so drift (thermal, other load) falls on both; the target is harness p50 / bare p50 <= 1.02.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.backends import available, backend_for, load_backend
from benchmarks.harness import time_runs
from benchmarks.manifest import read_manifest

TARGET = 1.02
ROW = "{:<24} {:<12} {:>8} {:>12} {:>15} {:>7}"


def bare_loop(handle: Any, backend: str, feed: Any, n: int) -> list[float]:
    """`n` timed calls straight on the runtime (no backend module, no closure), in ms."""
    clock = time.perf_counter_ns
    samples = []
    if backend == "onnxruntime":
        run = handle.session.run
        for _ in range(n):
            start = clock()
            run(None, feed)
            samples.append(clock() - start)
    else:
        interp, i, o = handle.interpreter, handle.input_index, handle.output_index
        set_tensor, invoke, get_tensor = interp.set_tensor, interp.invoke, interp.get_tensor
        for _ in range(n):
            start = clock()
            set_tensor(i, feed)
            invoke()
            get_tensor(o)
            samples.append(clock() - start)
    return [s / 1e6 for s in samples]


def harness_loop(module: Any, handle: Any, feed: Any, n: int) -> list[float]:
    """`n` timed calls through `time_runs` over `backend.invoke`, exactly as `measure` times them."""
    return time_runs(lambda: module.invoke(handle, feed), warmup=0, min_runs=n, min_time_s=0.0, max_runs=n)


def compare(path: Path, *, threads: int, rounds: int, round_s: float) -> tuple[float, float, int]:
    """(bare p50, harness p50, samples per arm) for one file."""
    backend = backend_for(path)
    module = load_backend(backend)
    handle = module.load(path, threads=threads)
    _, shape, _ = module.input_spec(handle)
    x = np.random.default_rng(0).standard_normal([d or 1 for d in shape], dtype=np.float32)
    feed = module.prepare(handle, x)
    warm = bare_loop(handle, backend, feed, 50)  # also sizes each round from the warm latency
    n = max(50, int(round_s * 1e3 / float(np.median(warm))))
    bare: list[float] = []
    harness: list[float] = []
    for r in range(rounds):
        arms = [lambda: bare.extend(bare_loop(handle, backend, feed, n))]
        arms.append(lambda: harness.extend(harness_loop(module, handle, feed, n)))
        for arm in arms if r % 2 == 0 else arms[::-1]:
            arm()
    return float(np.percentile(bare, 50)), float(np.percentile(harness, 50)), len(bare)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bundle", type=Path, help="bundle folder with manifest.json")
    parser.add_argument("--models", default="teacher,student_kd", help="comma-separated model names")
    parser.add_argument("--rounds", type=int, default=20, help="A/B rounds (even: each order equally)")
    parser.add_argument("--round-s", type=float, default=0.15, help="seconds per arm per round")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    names = set(args.models.split(","))
    entries = [
        e
        for e in read_manifest(args.bundle)["models"]
        if e["name"] in names and e["format"] in ("onnx", "tflite")
    ]
    if not entries:
        parser.error(f"{args.bundle}: no ONNX/TFLite files for models {sorted(names)}")
    print(ROW.format("file", "backend", "runs/arm", "bare p50 ms", "harness p50 ms", "ratio"))
    worst = 0.0
    for entry in entries:
        path = args.bundle / entry["file"]
        if not available(backend_for(path)):
            print(f"{entry['file']:<24} skipped: {backend_for(path)} is not installed")
            continue
        bare, harness, n = compare(path, threads=args.threads, rounds=args.rounds, round_s=args.round_s)
        ratio = harness / bare
        worst = max(worst, ratio)
        print(
            ROW.format(entry["file"], backend_for(path), n, f"{bare:.4f}", f"{harness:.4f}", f"{ratio:.3f}")
        )
    verdict = "meets" if worst <= TARGET else "misses"
    print(f"worst harness/bare p50 ratio {worst:.3f}: {verdict} the target <= {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
