"""Facts about the machine a benchmark ran on; anything unreadable is None."""

from __future__ import annotations

import glob
import os
import platform
import struct
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.board import board_facts

__all__ = ["machine_facts", "int8_dot_product", "INT8_DOT_FLAGS"]

# Distribution names, not import names: versions come from metadata so no runtime is imported.
_PACKAGES = {
    "numpy": "numpy",
    "onnxruntime": "onnxruntime",
    "ai_edge_litert": "ai-edge-litert",
    "tflite_runtime": "tflite-runtime",
}


def _read(path: str) -> str | None:
    """File text stripped, or None if it cannot be read."""
    try:
        return Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _cpuinfo_field(text: str | None, *keys: str) -> str | None:
    """First value in /proc/cpuinfo for any of `keys`, in order of preference."""
    if not text:
        return None
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and key in keys and key not in found and value.strip():
            found[key] = value.strip()
    return next((found[k] for k in keys if k in found), None)


def _cpu_model() -> str | None:
    # x86 says "model name"; ARM boards often only say "Hardware" or "Model" (e.g. Raspberry Pi).
    model = _cpuinfo_field(_read("/proc/cpuinfo"), "model name", "Model", "Hardware")
    return model or platform.processor() or None


# /proc/cpuinfo flags of the int8 dot-product instructions runtimes' int8 kernels use: x86 VNNI and AMX,
# ARM's dot product (asimddp) and 8-bit matrix multiply (i8mm, svei8mm).
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm", "svei8mm")
# aarch64's HWCAP bits for the same (linux/arch/arm64/include/uapi/asm/hwcap.h): (auxv type, bit, flag)
_ARM_HWCAPS = ((16, 20, "asimddp"), (26, 13, "i8mm"), (26, 9, "svei8mm"))


def int8_dot_product(cpuinfo: str | None, auxv: bytes | None = None) -> list[str] | None:
    """The int8 dot-product flags of this CPU: on x86 from /proc/cpuinfo's "flags"; on ARM from the kernel's
    HWCAP words in `auxv` (/proc/self/auxv), which qemu-user fills for the CPU it emulates where its
    /proc/cpuinfo shows the host's; else ARM's "Features" line. None when unreadable."""
    if auxv:
        words = dict(struct.iter_unpack("<QQ", auxv[: len(auxv) // 16 * 16]))
        if 16 in words:
            return [flag for key, bit, flag in _ARM_HWCAPS if words.get(key, 0) >> bit & 1]
    flags = _cpuinfo_field(cpuinfo, "flags", "Features")
    if flags is None:
        return None
    have = set(flags.split())
    return [f for f in INT8_DOT_FLAGS if f in have]


def _auxv() -> bytes | None:
    """/proc/self/auxv on a 64-bit ARM Linux process; None elsewhere (x86 reads its cpuinfo flags)."""
    if platform.machine() not in ("aarch64", "arm64"):
        return None
    try:
        return Path("/proc/self/auxv").read_bytes()
    except OSError:
        return None


def _total_ram_mb() -> float | None:
    try:
        import psutil

        return psutil.virtual_memory().total / 2**20
    except Exception:
        pass
    text = _read("/proc/meminfo")
    for line in (text or "").splitlines():
        if line.startswith("MemTotal:"):
            try:
                return int(line.split()[1]) / 1024  # value is in kB
            except (IndexError, ValueError):
                return None
    return None


def _affinity_count() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _cpufreq() -> dict[str, Any]:
    base = "/sys/devices/system/cpu/cpu0/cpufreq"
    khz = _read(f"{base}/scaling_cur_freq")
    try:
        mhz = int(khz) / 1000 if khz is not None else None
    except ValueError:
        mhz = None
    return {"governor": _read(f"{base}/scaling_governor"), "cur_freq_mhz": mhz}


def _thermal() -> list[dict[str, Any]] | None:
    zones = []
    for zone in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
        raw = _read(f"{zone}/temp")
        try:
            temp_c = int(raw) / 1000 if raw is not None else None  # millidegrees Celsius
        except ValueError:
            temp_c = None
        zones.append({"zone": os.path.basename(zone), "type": _read(f"{zone}/type"), "temp_c": temp_c})
    return zones or None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except Exception:
        return None


def machine_facts() -> dict[str, Any]:
    """CPU, memory, OS, frequency, temperatures and runtime versions of this machine."""
    facts: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "affinity_cores": _affinity_count(),
        "total_ram_mb": _total_ram_mb(),
        "os": platform.system() or None,
        "kernel": platform.release() or None,
        "platform": platform.platform(),
        "arch": platform.machine() or None,
        "python": sys.version.split()[0],
        "int8_dot_product": int8_dot_product(_read("/proc/cpuinfo"), _auxv()),
    }
    facts.update(_cpufreq())
    facts["thermal"] = _thermal()
    if board := board_facts():  # Raspberry Pi / Jetson model, throttling, power mode: only where present
        facts["board"] = board
    facts["versions"] = {name: _version(dist) for name, dist in _PACKAGES.items()}
    return facts
