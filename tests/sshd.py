"""A real OpenSSH server on 127.0.0.1 for tests: throwaway host and user keys, one port per "board"."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass
class LoopbackBoard:
    port: int
    host_key: Path  # the server's private host key (its .pub is what known_hosts lists)
    proc: subprocess.Popen

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {Path(str(self.host_key) + '.pub').read_text().strip()}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sshd(
    root: Path,
    client_key: Path,
    *,
    host_key: Path | None = None,
    chroot: Path | None = None,
    env: dict[str, str] | None = None,
) -> LoopbackBoard:
    """sshd on a free 127.0.0.1 port letting `client_key` in (public key only, no PAM); with `chroot`,
    every session runs inside that root (an arm64 Debian root runs there under qemu-user); `env` is set in
    every session (sshd's SetEnv)."""
    root.mkdir(parents=True, exist_ok=True)
    host_key = host_key or keygen(root / "host_ed25519")
    authorized = root / "authorized_keys"
    authorized.write_text(Path(str(client_key) + ".pub").read_text())
    port = _free_port()
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {authorized}\n"
        f"PidFile {root / 'sshd.pid'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
        + (f"ChrootDirectory {chroot}\n" if chroot is not None else "")
        + "".join(f"SetEnv {k}={v}\n" for k, v in (env or {}).items())
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=(root / "sshd.log").open("w"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return LoopbackBoard(port, host_key, proc)
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"sshd did not start: {(root / 'sshd.log').read_text()[-500:]}")
