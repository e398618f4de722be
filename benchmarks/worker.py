"""`python -m benchmarks.worker`: read a BenchConfig as JSON on stdin, write measurements as JSON."""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    """Run one measurement; the result is the only line on the real stdout."""
    config_dict = json.load(sys.stdin)
    # Pin before anything imports a runtime, so its thread pool starts on the chosen cores.
    from benchmarks.errors import EdgekdError
    from benchmarks.harness import BenchConfig, measure, pin_cpus

    config = BenchConfig(**config_dict)
    pin_notes = pin_cpus(config)
    # Runtimes may print banners on fd 1; send them to stderr so stdout carries only the result.
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        result = measure(config)
    except EdgekdError as exc:  # bad input: its message is the line the parent reports, no traceback
        sys.stderr.write(f"{exc}\n")
        sys.exit(1)
    finally:
        sys.stdout.flush()
        os.dup2(real_stdout, 1)
        os.close(real_stdout)
    if "notes" in result:
        result["notes"] = [*pin_notes, *result["notes"]]
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
