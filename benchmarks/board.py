"""Facts about a Raspberry Pi or Jetson board, each read only where the board has it and never guessed.

Readers take a filesystem `root` and a command runner so tests feed them files and outputs captured on
real boards; on a machine without the file or the command the fact is simply absent.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["board_facts", "parse_throttled", "parse_nvpmodel", "parse_tegra_release"]

Runner = Callable[[list[str]], str | None]

# vcgencmd get_throttled bits (Raspberry Pi documentation, "get_throttled").
_THROTTLE_BITS = {
    0: "under-voltage",
    1: "arm frequency capped",
    2: "throttled",
    3: "soft temperature limit",
    16: "under-voltage has occurred",
    17: "arm frequency capping has occurred",
    18: "throttling has occurred",
    19: "soft temperature limit has occurred",
}


def _run(cmd: list[str]) -> str | None:
    """A command's stdout, or None when it is not installed, fails or hangs."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8", "replace").strip("\x00 \n")  # device-tree strings end in NUL
    except OSError:
        return None


def parse_throttled(text: str | None) -> dict[str, Any] | None:
    """`throttled=0x50005` -> {"raw": "0x50005", "flags": [...]}; None when it is not that output."""
    match = re.fullmatch(r"throttled=(0x[0-9a-fA-F]+)", (text or "").strip())
    if match is None:
        return None
    value = int(match.group(1), 16)
    return {
        "raw": match.group(1),
        "flags": [name for bit, name in _THROTTLE_BITS.items() if value >> bit & 1],
    }


def parse_nvpmodel(text: str | None) -> dict[str, Any] | None:
    """`nvpmodel -q` output ("NV Power Mode: MAXN" then the mode number) -> {"name", "id"}."""
    match = re.search(r"NV Power Mode:\s*(\S+)\s*(\d+)?", text or "")
    if match is None:
        return None
    return {"name": match.group(1), "id": int(match.group(2)) if match.group(2) else None}


def parse_tegra_release(text: str | None) -> dict[str, Any] | None:
    """/etc/nv_tegra_release ("# R35 (release), REVISION: 4.1, ..., BOARD: t186ref, ...") -> L4T facts."""
    match = re.match(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text or "")
    if match is None:
        return None
    board = re.search(r"BOARD:\s*([^,\s]+)", text or "")
    return {"l4t": f"{match.group(1)}.{match.group(2)}", "board": board.group(1) if board else None}


def _jetson_clocks(root: Path) -> dict[str, Any] | None:
    """Current GPU and EMC frequencies (MHz) where the devfreq nodes exist."""
    out = {}
    for node in sorted((root / "sys/class/devfreq").glob("*")):
        freq = _text(node / "cur_freq")
        if freq and freq.isdigit():
            out[node.name] = int(freq) / 1e6
    return out or None


def board_facts(root: str | Path = "/", run: Runner = _run) -> dict[str, Any]:
    """Board model, throttling, power mode and clocks; only the facts this machine has."""
    root = Path(root)
    facts: dict[str, Any] = {}
    model = _text(root / "proc/device-tree/model")
    if model:
        facts["model"] = model
    if (
        model
        and "Raspberry Pi" in model
        and (throttled := parse_throttled(run(["vcgencmd", "get_throttled"])))
    ):
        facts["throttled"] = throttled
    if tegra := parse_tegra_release(_text(root / "etc/nv_tegra_release")):
        facts["jetson"] = tegra
        if power := parse_nvpmodel(run(["nvpmodel", "-q"])):
            facts["power_mode"] = power
        if clocks := _jetson_clocks(root):
            facts["clocks_mhz"] = clocks
    return facts
