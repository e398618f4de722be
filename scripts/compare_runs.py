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


def facts(run: Path) -> dict:
    """Everything `compare` and the printout use, read once."""
    return {
        "files": files(run),
        "manifest_keys": _keys(json.loads((run / "bundle" / "manifest.json").read_text())),
        "manifest_rows": manifest_rows(run),
        "accuracies": summary_accuracies(run),
        "record_keys": _keys([r.to_dict() for r in read_records(run / "bench" / "results.jsonl")]),
        "p50s": p50s(run),
    }


def compare(a: Path, b: Path, fa: dict, fb: dict) -> list[str]:
    """What differs between runs `a` and `b` (their `facts`) that a seeded rerun must repeat."""
    problems = []
    if fa["files"] != fb["files"]:
        only_a, only_b = sorted(fa["files"] - fb["files"]), sorted(fb["files"] - fa["files"])
        problems.append(f"files only in {a}: {only_a}; only in {b}: {only_b}")
    for rel in sorted(fa["files"] & fb["files"]):
        if rel.startswith("bundle/") and Path(rel).suffix in (".onnx", ".tflite", ".npz"):
            if (a / rel).read_bytes() != (b / rel).read_bytes():
                problems.append(f"{rel}: contents differ")
    ka, kb = fa["manifest_keys"], fb["manifest_keys"]
    if ka != kb:
        problems.append(f"manifest fields only in {a}: {sorted(ka - kb)}; only in {b}: {sorted(kb - ka)}")
    if (ma := fa["manifest_rows"]) != (mb := fb["manifest_rows"]):
        diff = sorted(f for f in ma.keys() | mb.keys() if ma.get(f) != mb.get(f))
        problems.append(f"manifest entries differ (sha256 or parity): {diff}")
    if fa["accuracies"] != fb["accuracies"]:
        problems.append(f"test accuracies differ: {fa['accuracies']} vs {fb['accuracies']}")
    if fa["record_keys"] != fb["record_keys"]:
        problems.append("bench record fields differ")
    if set(fa["p50s"]) != set(fb["p50s"]):
        problems.append(f"benchmarked configurations differ: {sorted(set(fa['p50s']) ^ set(fb['p50s']))}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    fa, fb = facts(args.before), facts(args.after)
    problems = compare(args.before, args.after, fa, fb)
    pa, pb = fa["p50s"], fb["p50s"]
    print(f"{len(fa['files'])} files; {len(fa['manifest_rows'])} shipped files; "
          f"{len(pa)} benchmarked configurations")  # fmt: skip
    for acc_name, acc in fa["accuracies"].items():
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
