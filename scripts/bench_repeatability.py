"""Do two `edgekd bench` calls of the same bundle agree? Pooled p50s side by side, per file.

    edgekd bench runs/demo --results /tmp/a.jsonl
    edgekd bench runs/demo --results /tmp/b.jsonl
    python scripts/bench_repeatability.py /tmp/a.jsonl /tmp/b.jsonl [--rounds 3]

For every configuration: each call's pooled p50 (median of its rounds' p50s) with its 95 % interval,
the difference between the calls, and a verdict: within 5 % (MLPerf Mobile's repeatability bar), or
outside it and flagged unstable by edgekd (leaving out one round moves its pooled p50 by more than 2.5 %
in either call), or outside it unflagged (a miss). `--rounds K` keeps each call's first K rounds, so a
5-round measurement also answers for 3.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.records import BenchRecord, config_key, group_rounds, read_records
from benchmarks.stats import STABLE_SPREAD, PooledLatency, pool_latency


def pooled(path: Path, rounds: int | None) -> dict[tuple, tuple[BenchRecord, PooledLatency]]:
    """Each configuration of `path` pooled over its first `rounds` rounds (all when None)."""
    out = {}
    for recs in group_rounds(read_records(path)):
        kept = [r for r in recs if rounds is None or r.round < rounds]
        out[config_key(kept[0])] = (kept[0], pool_latency([r.latency.samples_ms for r in kept]))
    return out


def verdict(diff_pct: float, a: PooledLatency, b: PooledLatency) -> str:
    """'within 5%', 'unstable (spread a/b %)' when edgekd flagged it, else 'MISS'."""
    if abs(diff_pct) <= STABLE_SPREAD * 100:
        return "within 5%"
    if a.unstable or b.unstable:
        return f"flagged unstable (one round moves it {a.influence * 100:.0f}%/{b.influence * 100:.0f}%)"
    return "MISS: outside 5%, not flagged"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("first", type=Path, help="results.jsonl of the first `edgekd bench` call")
    parser.add_argument("second", type=Path, help="results.jsonl of the second call")
    parser.add_argument("--rounds", type=int, default=None, help="use each call's first N rounds only")
    args = parser.parse_args(argv)
    a, b = pooled(args.first, args.rounds), pooled(args.second, args.rounds)
    print(
        f"{'file':<34} {'rounds':>6} {'p50 A ms [95% CI]':>26} {'p50 B ms [95% CI]':>26} {'diff':>7}  verdict"
    )
    counts = {"within": 0, "flagged": 0, "MISS": 0}
    for key in [k for k in a if k in b]:
        rec, pa = a[key]
        pb = b[key][1]
        diff = (pb.p50_ms / pa.p50_ms - 1) * 100
        text = verdict(diff, pa, pb)
        counts[text.split()[0].rstrip(":")] += 1
        name = f"{rec.model} {rec.format} {rec.precision}"
        ca = f"{pa.p50_ms:.4f} [{pa.ci_low_ms:.4f}-{pa.ci_high_ms:.4f}]"
        cb = f"{pb.p50_ms:.4f} [{pb.ci_low_ms:.4f}-{pb.ci_high_ms:.4f}]"
        print(f"{name:<34} {pa.rounds:>6} {ca:>26} {cb:>26} {diff:>+6.1f}%  {text}")
    total = sum(counts.values())
    print(
        f"{total} files: {counts['within']} within 5%, {counts['flagged']} outside but flagged unstable, "
        f"{counts['MISS']} missed"
    )
    return 0 if counts["MISS"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
