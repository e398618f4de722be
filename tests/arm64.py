"""A Debian arm64 root that runs on this x86 machine under qemu-user (binfmt_misc), for SSH board tests.

Built once with debootstrap (about 2 minutes) and cached as a tarball; its sessions run inside it through
sshd's ChrootDirectory. /proc and /dev are mounted in it, /sys is not (onnxruntime's cpuinfo would read
the host's topology under qemu and crash on import); only the two files listing the cores are written.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

# The CPU qemu-user emulates (QEMU_CPU, set in the board's SSH sessions): the Raspberry Pi 5's core. Under
# Debian's qemu 7.2 the default "max" CPU computes XNNPACK's int8 kernels wrong (LiteRT and ExecuTorch int8
# files agreed with x86 on 5-62 % of top-1), where cortex-a72 and cortex-a76 match it exactly.
QEMU_CPU = "cortex-a76"
ROOT = Path("/srv/edgekd-arm64root")  # every path component root-owned: sshd's ChrootDirectory needs it
CACHE = Path.home() / ".cache" / "edgekd" / "arm64root.tar"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")


def missing() -> str | None:
    """Why an arm64 root cannot be had here, or None."""
    if os.geteuid() != 0:
        return "needs root (binfmt_misc, debootstrap, chroot)"
    for tool in ("debootstrap", "tar"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (make arm)"
    if not QEMU_CONF.is_file():
        return "qemu-user-static not installed (make arm)"
    return None


def _sh(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True, text=True)


def _binfmt() -> None:
    if not (BINFMT / "register").exists():
        _sh("mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT))
    if not (BINFMT / "qemu-aarch64").exists():
        rule = next(line for line in QEMU_CONF.read_text().splitlines() if line.startswith(":"))
        (BINFMT / "register").write_text(rule)


def _mounted(path: Path) -> bool:
    return subprocess.run(["mountpoint", "-q", str(path)], check=False).returncode == 0


def arm64_root() -> Path:
    """The root, built (or unpacked from the cache) on first use, with /proc and /dev mounted."""
    _binfmt()
    if not (ROOT / "usr/bin/python3").exists():
        ROOT.mkdir(parents=True, exist_ok=True)
        if CACHE.is_file():
            _sh("tar", "-xf", str(CACHE), "-C", str(ROOT))
        else:
            _sh("debootstrap", "--arch=arm64", "--variant=minbase", "--include=python3,python3-venv",
                "trixie", str(ROOT), "http://deb.debian.org/debian")  # fmt: skip
            CACHE.parent.mkdir(parents=True, exist_ok=True)
            _sh("tar", "-cf", str(CACHE), "-C", str(ROOT), ".")
    # A board's kernel lists its cores in /sys; without /sys mounted, XNNPACK's cpuinfo finds none and the
    # ExecuTorch delegate refuses to start. Two plain files say what a real board's would.
    cpus = ROOT / "sys/devices/system/cpu"
    cpus.mkdir(parents=True, exist_ok=True)
    for name in ("possible", "present"):
        (cpus / name).write_text(f"0-{(os.cpu_count() or 1) - 1}\n")
    if not _mounted(ROOT / "proc"):
        _sh("mount", "-t", "proc", "proc", str(ROOT / "proc"))
    if not _mounted(ROOT / "dev"):
        _sh("mount", "--bind", "/dev", str(ROOT / "dev"))
    return ROOT
