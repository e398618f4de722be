"""Run one benchmark configuration in a fresh worker process and turn its measurements into a record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.errors import EdgekdError, InputError
from benchmarks.machine import machine_facts
from benchmarks.measure import measure, time_runs
from benchmarks.protocol import BenchConfig
from benchmarks.records import BenchRecord, LatencyStats

__all__ = [
    "BenchConfig",
    "BenchmarkError",
    "BenchmarkSkipped",
    "measure",
    "run_benchmark",
    "time_runs",
    "pin_cpus",
]


class BenchmarkError(EdgekdError, RuntimeError):
    """A file could not be benchmarked (the worker crashed, timed out or printed no result)."""


class BenchmarkSkipped(BenchmarkError):
    """This configuration cannot run by design (say batch 8 on a batch-1 TFLite file); not a failure."""


def pin_cpus(config: BenchConfig) -> list[str]:
    """Restrict this process to the config's cores (a constrained target's, else `config.cpus`); call
    before the runtime starts threads. Returns notes: a machine that refuses pinning runs unpinned."""
    cpus = config.target.get("cpus") or config.cpus
    if not cpus:
        return []
    try:
        os.sched_setaffinity(0, {int(c) for c in cpus})
    except (AttributeError, OSError) as exc:  # macOS/Windows have no call; a container may refuse it
        if config.target.get("cpus"):
            raise  # a constrained target without its core limit would measure something else
        return [f"not pinned to cores {list(cpus)}: {exc}"]
    return []


def _child_env() -> dict[str, str]:
    # The child must import this copy of benchmarks even when edgekd is not installed.
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _kill(proc: subprocess.Popen) -> None:
    """Kill the worker and anything it started: a child holding its pipes would block the read forever."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the worker leads its own process group (start_new_session)
    except (AttributeError, ProcessLookupError, PermissionError):  # Windows: no groups; or already gone
        proc.kill()
    proc.wait()


def _exit_text(code: int) -> str:
    """`-11 (SIGSEGV)` for a worker killed by a signal, else the exit code."""
    if code >= 0:
        return str(code)
    try:
        return f"{code} ({signal.Signals(-code).name})"
    except ValueError:
        return str(code)


def _run_child(config: BenchConfig, python: str, timeout: float) -> dict[str, Any]:
    with subprocess.Popen(
        [python, "-m", "benchmarks.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(),
        start_new_session=os.name == "posix",  # its own process group, so a timeout can kill all of it
    ) as proc:
        try:
            stdout, stderr = proc.communicate(json.dumps(config.to_dict()), timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            _kill(proc)
            raise BenchmarkError(
                f"{config.model_path}: benchmark did not finish within {timeout:g} s; worker killed"
            ) from exc
        except BaseException:  # Ctrl-C: the worker is in another session and would not get the signal
            _kill(proc)
            raise
    if proc.returncode != 0:
        lines = [line for line in stderr.splitlines() if line.strip()]
        last = lines[-1] if lines else "no error output"
        raise BenchmarkError(
            f"{config.model_path}: benchmark worker exited with {_exit_text(proc.returncode)}: {last}"
        )
    lines = [line for line in stdout.splitlines() if line.strip()]
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError) as exc:
        raise BenchmarkError(f"{config.model_path}: benchmark worker printed no JSON result") from exc


def _edgekd_version() -> str | None:
    try:
        return metadata.version("edgekd")
    except metadata.PackageNotFoundError:
        return None


def run_benchmark(config: BenchConfig, *, python: str = sys.executable, timeout: float = 600) -> BenchRecord:
    """Measure `config` in a fresh subprocess (so memory does not leak between models) into a record."""
    if not Path(config.model_path).is_file():
        raise InputError(f"{config.model_path}: model file not found")
    result = _run_child(config, python, timeout)
    if "skipped" in result:
        raise BenchmarkSkipped(f"{config.model_path} (batch {config.batch_size}): {result['skipped']}")
    return BenchRecord(
        model=config.model,
        role=config.role,
        file=config.model_path,
        format=config.format,
        precision=config.precision,
        backend=result["backend"],
        target=dict(config.target),
        threads=config.threads,
        batch_size=config.batch_size,
        load_ms=result["load_ms"],
        first_run_ms=result["first_run_ms"],
        latency=LatencyStats(**result["latency"]),
        throughput_ips=result["throughput_ips"],
        peak_rss_mb=result["peak_rss_mb"],
        baseline_rss_mb=result["baseline_rss_mb"],
        rss_increase_mb=result["rss_increase_mb"],
        file_size_bytes=os.path.getsize(config.model_path),
        accuracy=result["accuracy"],
        n_accuracy=result["n_accuracy"],
        output_check=result.get("output_check"),
        machine=machine_facts(),
        runtime_version=result["runtime_version"],
        timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        edgekd_version=_edgekd_version(),
        warmup=config.warmup,
        protocol={
            "min_runs": config.min_runs,
            "min_time_s": config.min_time_s,
            "warmup": config.warmup,
            "max_runs": config.max_runs,
            **config.schedule,
        },
        streams=config.streams,
        round=config.round,
        order=config.order,
        suite=config.suite,
        images=result["images"],
        wall_s=result["wall_s"],
        runs_per_stream=result["runs_per_stream"],
        input_shape=result["input_shape"],
        cpu_affinity=result["cpu_affinity"],
        backend_options=dict(config.backend_options),
        backend_info=result["backend_info"],
        notes=result["notes"],
    )
