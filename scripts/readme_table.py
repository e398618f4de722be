"""The README's result table, generated from a run's files: `python scripts/readme_table.py runs/demo`.

Copies the run's record (bench results, manifest, training summary: no models) to docs/runs/demo/ with
its provenance (commit, date, CPU), and rewrites the README between the `readme-table` markers from that
record. `tests/test_readme.py` regenerates the table from docs/runs/demo/ and fails when they differ.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

from benchmarks.records import append_record, read_records
from toolkit.report import build_rows, read_manifest, read_results, read_summary, recommend
from toolkit.report.recommend import recommendation_text
from toolkit.report.table import fmt_ms, fmt_size, fmt_spread

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "docs" / "runs" / "demo"
README = ROOT / "README.md"
BEGIN, END = "<!-- readme-table: begin -->", "<!-- readme-table: end -->"
FILES = {"results.jsonl": "bench/results.jsonl", "manifest.json": "bundle/manifest.json",
         "summary.json": "distill/summary.json"}  # fmt: skip


def _commit() -> str:
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True, check=True).stdout.strip()  # fmt: skip
    dirty = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", "HEAD", "--", "toolkit", "export",
                            "benchmarks"], check=False).returncode  # fmt: skip
    return f"{sha}{'+changes' if dirty else ''}"


def keep_record(run: Path, record: Path = RECORD) -> None:
    """The run's record files and their provenance into `record` (replacing what was there). Each round's
    latency samples are thinned to its p50 (17 MB of samples for the demo): the pooled p50s, the spreads
    and the flags the table shows come from the rounds' p50s alone."""
    record.mkdir(parents=True, exist_ok=True)
    for name, rel in FILES.items():
        shutil.copy(run / rel, record / name)
    (record / "results.jsonl").unlink()
    for rec in read_records(run / FILES["results.jsonl"]):
        thin = replace(rec.latency, samples_ms=[rec.latency.p50])
        append_record(record / "results.jsonl", replace(rec, latency=thin))
    (record / "provenance.json").write_text(json.dumps({"commit": _commit(), "command": "make demo"}) + "\n")


def _accuracy(row, teacher) -> str:
    acc = f"{row.accuracy * 100:.2f} %" if row.accuracy is not None else "–"
    if row is teacher or row.accuracy is None or teacher is None:
        return acc
    return f"{acc} ({(row.accuracy - teacher.accuracy) * 100:+.2f})"


def table(record: Path = RECORD) -> str:
    """The Markdown block between the README markers: provenance, the rows, the recommendation."""
    records = read_results(record / "results.jsonl")
    rows = build_rows(records, read_manifest(record / "manifest.json"))
    summary = read_summary(record / "summary.json")
    provenance = json.loads((record / "provenance.json").read_text())
    (rec,) = recommend(rows)
    teacher = rec.teacher
    machine = records[0].machine or {}
    day = min(r.timestamp for r in records)[:10]
    rounds = max(r.rounds for r in rows)
    models = summary.models if summary is not None else {}
    kd, scratch = (models[n].val_accuracy if n in models else None for n in ("student_kd", "student_scratch"))
    lines = [
        f"Measured by `{provenance['command']}` at commit {provenance['commit']} on {day}, "
        f"{machine.get('cpu_model', 'unknown CPU')} ({machine.get('affinity_cores', '?')} cores usable); "
        f"batch 1, 1 thread, {rounds} rounds; accuracy on {rows[0].n_accuracy:,} test images (Δ: points "
        "against the teacher's fp32 file); p50: the median of the rounds' p50s (the record keeps one value "
        "per round, so the recommendation's interval is a bootstrap over rounds). Generated from "
        "`docs/runs/demo/` by `scripts/readme_table.py`.",
        "",
        "| model | format | precision | size | accuracy (Δ) | p50 ms | rounds · spread | speedup |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r.role != "teacher", r.model, r.format, r.p50_ms)):
        speed = f"{r.speedup:.1f}×" if r.speedup and not r.is_baseline else "–"
        cells = [r.model, r.format, r.precision, fmt_size(r.size_bytes), _accuracy(r, teacher)]
        lines.append("| " + " | ".join([*cells, fmt_ms(r.p50_ms), fmt_spread(r), speed]) + " |")
    lines += ["", f"Validation: KD student {kd * 100:.2f} %, scratch student {scratch * 100:.2f} %. "
              f"Recommendation: {recommendation_text(rec)}"]  # fmt: skip
    return "\n".join(lines)


def replace_table(readme: str, block: str) -> str:
    """`readme` with the text between the markers replaced by `block`."""
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{block}\n{END}{tail}"


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("run", type=Path, nargs="?", help="the run directory (default: regenerate only)")
    args = parser.parse_args()
    if args.run is not None:
        keep_record(args.run)
    README.write_text(replace_table(README.read_text(), table()))
    print(f"README.md table from {RECORD.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
