"""Run the bad-input corpus (tests/test_bad_input.py) and print `corpus: N cases, M pass`.

Each case feeds an entry point one broken input and checks for one `error:` line naming the file and
the fault, exit code 1, no traceback and no half-written output. Known gaps are marked xfail in the
file and counted apart. Exit status 1 when any other case fails.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = "tests/test_bad_input.py"


class _Tally:
    """A pytest plugin counting each case's outcome once (its call phase, or setup when that failed)."""

    def __init__(self) -> None:
        self.outcomes: dict[str, str] = {}

    def pytest_runtest_logreport(self, report) -> None:
        if report.when == "call" or (report.when == "setup" and not report.passed):
            xfail = hasattr(report, "wasxfail")
            kind = "xfail" if xfail and report.skipped else "xpass" if xfail else report.outcome
            self.outcomes[report.nodeid] = kind


def run_corpus(extra: list[str]) -> _Tally:
    """Run the corpus in this process (pytest's API) from the repository root."""
    import pytest

    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))  # `tests.conftest` must be this repository's, not an installed `tests`
    tally = _Tally()
    pytest.main([CORPUS, "-q", "-p", "no:cacheprovider", *extra], plugins=[tally])
    return tally


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.epilog = "Other arguments go to pytest, e.g. -k bench or -x."
    _, pytest_args = parser.parse_known_args()
    outcomes = run_corpus(pytest_args).outcomes
    counts = {k: sum(v == k for v in outcomes.values()) for k in ("passed", "failed", "skipped", "xfail")}
    counts["xpass"] = sum(v == "xpass" for v in outcomes.values())
    known = f", {counts['xfail']} known gaps (xfail)" if counts["xfail"] else ""
    skipped = f", {counts['skipped']} skipped" if counts["skipped"] else ""
    print(f"corpus: {len(outcomes)} cases, {counts['passed']} pass{known}{skipped}")
    bad = [nodeid for nodeid, kind in outcomes.items() if kind in ("failed", "xpass")]
    for nodeid in bad:
        print(f"  {outcomes[nodeid].upper()} {nodeid}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
