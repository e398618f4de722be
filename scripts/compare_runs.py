"""Compare two run directories of the same config and seed (before and after a change that should not change
behaviour): the same files, the same fields, and the same values where a seeded run must repeat them.

    python scripts/compare_runs.py runs/before runs/after

Compared: the files of each run (names), the manifest's fields and every shipped file's sha256 and parity
numbers (`.pt2` files hold a random serialization id: names only), the distill summary's accuracies, and
the bench records' fields and configurations. Timings are measurements: reported side by side, not compared.
Exit 1 when anything that must repeat differs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from benchmarks.manifest import read_manifest
from benchmarks.records import read_records


def files(run: Path) -> set[str]:
    return {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()}


def _keys(value, prefix: str = "") -> set[str]:
    """Every field path of a JSON value (list items share one path)."""
    if isinstance(value, dict):
        inner = {x for k, v in value.items() for x in _keys(v, f"{prefix}{k}.")}
        return {f"{prefix}{k}" for k in value} | inner
    if isinstance(value, list):
        return {x for v in value for x in _keys(v, f"{prefix}[].")}
    return set()


def manifest_rows(run: Path) -> dict[str, tuple]:
    """file -> (sha256 or None for .pt2, parity max |diff|, agreement, accuracy)."""
    out = {}
    for m in read_manifest(run / "bundle").models:
        sha = None if m.file.endswith(".pt2") else m.sha256
        out[m.file] = (sha, m.parity.max_abs_diff, m.parity.top1_agreement, m.parity.accuracy)
    return out


def summary_accuracies(run: Path) -> dict[str, float]:
    summary = json.loads((run / "distill" / "summary.json").read_text())
    return {k: v["test_accuracy"] for k, v in summary.items() if isinstance(v, dict) and "test_accuracy" in v}


def p50s(run: Path) -> dict[tuple, float]:
    """Median over rounds of each configuration's p50 (ms)."""
    rounds: dict[tuple, list[float]] = {}
    for r in read_records(run / "bench" / "results.jsonl"):
        rounds.setdefault((r.model, r.format, r.precision, r.backend, r.threads), []).append(r.latency.p50)
    return {k: statistics.median(v) for k, v in rounds.items()}


def compare(a: Path, b: Path) -> list[str]:
    """What differs between runs `a` and `b` that a seeded rerun must repeat."""
    problems = []
    fa, fb = files(a), files(b)
    if fa != fb:
        problems.append(f"files only in {a}: {sorted(fa - fb)}; only in {b}: {sorted(fb - fa)}")
    for rel in sorted(fa & fb):
        if rel.startswith("bundle/") and Path(rel).suffix in (".onnx", ".tflite", ".npz"):
            if (a / rel).read_bytes() != (b / rel).read_bytes():
                problems.append(f"{rel}: contents differ")
    ka = _keys(json.loads((a / "bundle" / "manifest.json").read_text()))
    kb = _keys(json.loads((b / "bundle" / "manifest.json").read_text()))
    if ka != kb:
        problems.append(f"manifest fields only in {a}: {sorted(ka - kb)}; only in {b}: {sorted(kb - ka)}")
    if (ma := manifest_rows(a)) != (mb := manifest_rows(b)):
        diff = sorted(f for f in ma.keys() | mb.keys() if ma.get(f) != mb.get(f))
        problems.append(f"manifest entries differ (sha256 or parity): {diff}")
    if (sa := summary_accuracies(a)) != (sb := summary_accuracies(b)):
        problems.append(f"test accuracies differ: {sa} vs {sb}")
    ra, rb = read_records(a / "bench" / "results.jsonl"), read_records(b / "bench" / "results.jsonl")
    if _keys([r.to_dict() for r in ra]) != _keys([r.to_dict() for r in rb]):
        problems.append("bench record fields differ")
    if set(pa := p50s(a)) != set(pb := p50s(b)):
        problems.append(f"benchmarked configurations differ: {sorted(set(pa) ^ set(pb))}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    problems = compare(args.before, args.after)
    pa, pb = p50s(args.before), p50s(args.after)
    print(f"{len(files(args.before))} files; {len(manifest_rows(args.before))} shipped files; "
          f"{len(pa)} benchmarked configurations")  # fmt: skip
    for acc_name, acc in summary_accuracies(args.before).items():
        print(f"  {acc_name:<18} test accuracy {100 * acc:.2f} %")
    for key in sorted(pa.keys() & pb.keys()):
        ratio = pb[key] / pa[key]
        print(f"  {' '.join(map(str, key)):<52} p50 {pa[key]:.4f} -> {pb[key]:.4f} ms ({ratio:.2f}x)")
    for problem in problems:
        print(f"DIFFERS: {problem}")
    print("same files, fields and seeded values" if not problems else f"{len(problems)} difference(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
