"""Benchmark suites: YAML files naming threads, batches, streams, protocol, backends and an honest target."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from benchmarks.backends import backend_names, file_suffixes
from benchmarks.errors import InputError
from benchmarks.protocol import DEFAULT_PROTOCOL

__all__ = ["Suite", "SUITES_DIR", "list_suites", "load_suite", "detect_device", "resolve_target"]

SUITES_DIR = Path(__file__).resolve().parent / "suites"
DEVICES = {"raspberry-pi": "a Raspberry Pi", "jetson": "an NVIDIA Jetson"}  # as the label says it

_KINDS = ("native", "constrained")  # "emulated" needs an emulator, which no suite drives


@dataclass(frozen=True)
class Suite:
    """Everything a benchmark run varies and holds fixed; the CLI overrides single fields with `replace`."""

    name: str = "default"
    description: str = ""
    threads: list[int] = field(default_factory=lambda: [1])
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    streams: list[int] = field(default_factory=lambda: [1])
    warmup: int = DEFAULT_PROTOCOL.warmup
    min_runs: int = DEFAULT_PROTOCOL.min_runs
    min_time_s: float = DEFAULT_PROTOCOL.min_time_s
    max_runs: int = DEFAULT_PROTOCOL.max_runs
    repeats: int = DEFAULT_PROTOCOL.repeats
    cooldown_s: float = 0.0
    seed: int = 0
    accuracy: bool = True
    pin: bool = True  # pin each worker to cores of its own (native targets; see plan._pinned_cores)
    # Seconds one worker may take before it is killed and its configuration counted as failed (a hang).
    timeout_s: float = 600.0
    backends: dict[str, list[str]] = field(default_factory=dict)  # format -> preference order
    backend_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # backend -> load() kwargs
    # kind: native | constrained; device: raspberry-pi | jetson; cpus, max_threads: constrained only.
    target: dict[str, Any] = field(default_factory=lambda: {"kind": "native"})
    path: str | None = None  # the YAML file, when loaded from one


def list_suites() -> list[str]:
    """Names of the suites shipped in benchmarks/suites/."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # YAML `true` must not pass as 1


def _check_value(key: str, value: Any) -> str | None:
    """What is wrong with `value` for top-level `key`, or None."""
    if key in ("threads", "batch_sizes", "streams"):
        ok = isinstance(value, list) and value and all(_is_int(v) and v >= 1 for v in value)
        return None if ok else f"expected a non-empty list of integers >= 1, got {value!r}"
    if key in ("warmup", "seed"):
        return None if _is_int(value) and value >= 0 else f"expected an integer >= 0, got {value!r}"
    if key in ("min_runs", "max_runs", "repeats"):
        return None if _is_int(value) and value >= 1 else f"expected an integer >= 1, got {value!r}"
    if key in ("min_time_s", "cooldown_s"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
        return None if ok else f"expected a number >= 0, got {value!r}"
    if key == "timeout_s":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")
        return None if ok else f"expected a number of seconds > 0, got {value!r}"
    if key in ("accuracy", "pin"):
        return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
    return None if isinstance(value, str) else f"expected a string, got {value!r}"  # name, description


def _check_backends(value: Any) -> tuple[str, str] | None:
    """(subkey, problem) for the `backends` table, or None."""
    if not isinstance(value, dict):
        return "", f"expected a mapping of format to backend names, got {value!r}"
    for fmt, names in value.items():
        if fmt not in file_suffixes():
            return f".{fmt}", f"unknown format; expected one of {', '.join(file_suffixes())}"
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not names or any(n not in backend_names() for n in names):
            return f".{fmt}", f"expected backend names from {', '.join(backend_names())}, got {value[fmt]!r}"
    return None


def _check_options(value: Any) -> tuple[str, str] | None:
    """(subkey, problem) for the `backend_options` table, or None."""
    if not isinstance(value, dict):
        return "", f"expected a mapping of backend to options, got {value!r}"
    for name, opts in value.items():
        if name not in backend_names():
            return f".{name}", f"unknown backend; expected one of {', '.join(backend_names())}"
        if not isinstance(opts, dict) or not all(isinstance(k, str) for k in opts):
            return f".{name}", f"expected a mapping of option names to values, got {opts!r}"
    return None


def _check_target(value: Any) -> tuple[str, str] | None:
    """(subkey, problem) for the `target` table, or None."""
    if not isinstance(value, dict):
        return "", f"expected a mapping, got {value!r}"
    unknown = sorted(set(value) - {"kind", "device", "cpus", "max_threads"})
    if unknown:
        return f".{unknown[0]}", "unknown key; expected kind, device, cpus, max_threads"
    kind = value.get("kind", "native")
    if kind not in _KINDS:
        return ".kind", f"expected one of {', '.join(_KINDS)}, got {kind!r}"
    if "device" in value and value["device"] not in DEVICES:
        return ".device", f"expected one of {', '.join(DEVICES)}, got {value['device']!r}"
    for key in ("cpus", "max_threads"):
        if key in value and not (_is_int(value[key]) and value[key] >= 1):
            return f".{key}", f"expected an integer >= 1, got {value[key]!r}"
    if kind == "constrained" and "cpus" not in value:
        return ".cpus", "a constrained target needs the number of cores to pin to"
    if kind == "native" and ("cpus" in value or "max_threads" in value):
        return ".cpus" if "cpus" in value else ".max_threads", "only a constrained target pins or caps"
    if kind == "constrained" and "device" in value:
        return ".device", "a constrained target is this CPU, not a device"
    return None


_TABLES = {"backends": _check_backends, "backend_options": _check_options, "target": _check_target}


def _check_key(where: str, key: Any, value: Any) -> None:
    """One suite key and its value; ValueError 'file: key: problem' if either is wrong."""
    known = [f.name for f in fields(Suite) if f.name != "path"]
    if key not in known:
        shown = key if str(key).isprintable() else repr(key)  # a line break must not split the error
        raise InputError(f"{where}: {shown}: unknown key; expected one of {', '.join(known)}")
    if key in _TABLES:
        problem = _TABLES[key](value)
        if problem is not None:
            sub = problem[0] if problem[0].isprintable() else repr(problem[0])  # nested keys too
            raise InputError(f"{where}: {key}{sub}: {problem[1]}")
    elif (message := _check_value(key, value)) is not None:
        raise InputError(f"{where}: {key}: {message}")


def _validate(where: str, data: Any) -> dict[str, Any]:
    """Checked suite values from parsed YAML; the first problem raises ValueError 'file: key: problem'."""
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a mapping of suite settings, got {type(data).__name__}")
    for key, value in data.items():
        _check_key(where, key, value)
    max_runs = data.get("max_runs", DEFAULT_PROTOCOL.max_runs)
    if max_runs < (min_runs := data.get("min_runs", DEFAULT_PROTOCOL.min_runs)):
        raise InputError(f"{where}: max_runs: {max_runs} is below min_runs {min_runs}")
    values = dict(data)
    if "backends" in values:
        values["backends"] = {
            k: [v] if isinstance(v, str) else list(v) for k, v in values["backends"].items()
        }
    if "min_time_s" in values:
        values["min_time_s"] = float(values["min_time_s"])
    for key in ("cooldown_s", "timeout_s"):
        if key in values:
            values[key] = float(values[key])
    return values


def load_suite(name_or_path: str | os.PathLike[str]) -> Suite:
    """A shipped suite by name (`cpu`, `raspberry-pi`, ...) or a YAML file; bad content raises ValueError."""
    # Checked by hand, not with pydantic: `benchmarks` must run on a board that has only numpy, the
    # runtime and PyYAML, and these few keys do not need a schema library.
    import yaml

    text = str(name_or_path)
    path = Path(text) if text.endswith((".yaml", ".yml")) or os.sep in text else SUITES_DIR / f"{text}.yaml"
    if not path.is_file():
        if path.parent == SUITES_DIR:
            raise InputError(
                f"{text}: unknown suite; shipped suites: {', '.join(list_suites())}, or a .yaml file"
            )
        raise InputError(f"{path}: suite file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # safe_load: no tags that build objects
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a YAML text file (byte {exc.start} is not UTF-8)") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid YAML ({' '.join(str(exc).split())})") from exc
    values = _validate(str(path), data if data is not None else {})
    return Suite(**{"name": path.stem, **values, "path": str(path)})


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def detect_device(root: str | os.PathLike[str] = "/") -> tuple[str, str] | None:
    """(device key, model string) when this machine is a Raspberry Pi or a Jetson, else None."""
    root = Path(root)
    model = _read(root / "proc/device-tree/model") or ""  # NUL-terminated on real boards
    if "Raspberry Pi" in model:
        return "raspberry-pi", model
    if "NVIDIA Jetson" in model or (root / "etc/nv_tegra_release").is_file():
        return "jetson", model or "NVIDIA Jetson"
    return None


def _cpu_name() -> str:
    from benchmarks.machine import machine_facts

    return machine_facts().get("cpu_model") or "unknown CPU"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


_ARM = ("aarch64", "arm64", "armv7l", "armv8l")
_X86_VENDORS = ("GenuineIntel", "AuthenticAMD", "HygonGenuine")


def emulation(cpuinfo: str | None = None, machine: str | None = None) -> str | None:
    """ "qemu-user" when this ARM Python runs under user-mode emulation: qemu-user passes the host's
    /proc/cpuinfo through, so an ARM process sees an x86 vendor; with the CPU model it emulates when
    QEMU_CPU names one ("qemu-user, cortex-a76"); else None."""
    if (machine or platform.machine()) not in _ARM:
        return None
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    if not any(v in cpuinfo for v in _X86_VENDORS):
        return None
    cpu = os.environ.get("QEMU_CPU")
    return f"qemu-user, {cpu}" if cpu else "qemu-user"


def resolve_target(
    suite: Suite, threads: int, *, root: str | os.PathLike[str] = "/", cpus: list[int] | None = None
) -> dict[str, Any]:
    """The record's target: name, kind, an honest label, and for constrained suites the cores to pin to.

    `cpus` are the cores available to choose from (default: this process's affinity).
    """
    spec = suite.target
    if spec.get("kind", "native") == "constrained":
        allowed = cpus if cpus is not None else sorted(os.sched_getaffinity(0))
        chosen = allowed[: spec["cpus"]]
        budget = f"{_plural(len(chosen), 'core')}, {_plural(threads, 'thread')}"
        label = f"constrained local CPU ({budget}), not a phone"
        return {"name": suite.name, "kind": "constrained", "label": label, "cpus": chosen}
    device = spec.get("device")
    if device is None and (emulated := emulation()) is not None:
        machine = platform.machine()
        label = f"emulated {machine} ({emulated}) on {_cpu_name()}"  # never presented as an ARM board's
        return {"name": f"emulated-{machine}", "kind": "emulated", "label": label}
    if device is None:
        return {"name": "local-cpu", "kind": "native", "label": f"native: this CPU ({_cpu_name()})"}
    found = detect_device(root)
    if found is not None and found[0] == device:
        return {"name": device, "kind": "native", "label": f"native: {found[1]}", "device": found[1]}
    # Suite settings tuned for a board, measured elsewhere: the label must not pass for that board.
    return {
        "name": f"local-cpu ({device} settings)",
        "kind": "native",
        "label": f"native: this CPU ({_cpu_name()}) with {device} suite settings — not {DEVICES[device]}",
    }
