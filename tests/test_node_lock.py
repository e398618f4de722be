"""The node lock of sweep trials: work side by side, a benchmark alone, and a waiting benchmark first."""

from __future__ import annotations

import threading
import time

from toolkit.sweep.node import Phase, node_phase, overlaps


def test_work_shares_the_node_and_a_benchmark_has_it_alone(tmp_path, monkeypatch):
    # flock locks belong to open files, so threads that each open the lock contend like processes do
    monkeypatch.setenv("EDGEKD_NODE_LOCK_DIR", str(tmp_path))
    phases: dict[str, list[Phase]] = {name: [] for name in "ABCD"}

    def hold(name: str, kind: str, after: float, seconds: float) -> None:
        time.sleep(after)
        with node_phase(kind, kind, phases[name]):  # a phase named by its kind
            time.sleep(seconds)

    plan = [
        ("A", "work", 0.0, 1.6),  # (who, kind, starts asking after s, holds for s); gaps of 0.2 s or more
        ("B", "work", 0.2, 1.6),
        ("C", "bench", 0.6, 0.4),
        ("D", "work", 1.2, 0.1),
    ]
    threads = [threading.Thread(target=hold, args=step) for step in plan]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a, b, c, d = (phases[n][0] for n in "ABCD")
    assert b.start < a.end  # work runs side by side
    assert c.start >= max(a.end, b.end)  # the benchmark waited for both
    assert d.start >= c.end  # work asked for while the benchmark waited queued behind it
    labelled = [(n, phases[n][0]) for n in "ABCD"]
    assert overlaps(labelled) == []
    late = Phase("work", d.node, c.start + 0.1, c.end + 1)  # a phase that would have run beside the benchmark
    assert overlaps([("C", c), ("D", late)]) == [("C/bench", "D/work")]
    assert overlaps([("C", c), ("E", Phase("work", "another-node", c.start, c.end))]) == []
