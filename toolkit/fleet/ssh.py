"""Benchmark a bundle on boards over SSH (asyncssh): push it, set up edgekd there, stream the records back.

One coroutine per board, all boards at once, one suite per host at a time (measurements on one board never
overlap). Host keys are checked against known_hosts; a key seen for the first time is refused unless the
caller trusts new hosts; every remote command is built with `shlex.join`. asyncssh rather than paramiko or
fabric: it is asyncio-native (several boards from one thread), streams a remote process's stdout line by
line, and does SFTP and known_hosts checking itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shlex
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.backends import suffixes_text
from benchmarks.files import sha256_file
from benchmarks.manifest import listed_files, read_manifest
from benchmarks.profile import read_profiles, write_profiles
from benchmarks.records import BenchRecord, append_record, drop_torn_tail, read_records
from toolkit.errors import InputError
from toolkit.fleet import TargetKind, register_target_kind
from toolkit.fleet.targets import Board, BoardRun, board_record, board_target

__all__ = ["BoardRun", "Payload", "payload", "run_boards", "profile_boards", "board_records"]

# Run on the board with its own python (stdlib only): machine, Python, glibc, and sha256 of named files.
PROBE = (
    "import hashlib, json, os, platform, sys\n"
    "def sha(p):\n"
    "    try:\n"
    "        with open(p, 'rb') as f: return hashlib.sha256(f.read()).hexdigest()\n"
    "    except OSError: return None\n"
    "print(json.dumps({'machine': platform.machine(), 'python': '%d.%d' % sys.version_info[:2],\n"
    "    'glibc': platform.libc_ver()[1] or None, 'files': {p: sha(p) for p in sys.argv[1:]}}))\n"
)
VERSION_PROBE = "import importlib.metadata as m; print(m.version('edgekd'))"


INSTALL_TIMEOUT_S = 1200.0  # seconds for the board's venv and its pip install


def board_records(results: Path, board: str) -> list[BenchRecord]:
    """The records `results` holds for `board` (its `target.name`)."""
    if not results.is_file():
        return []
    drop_torn_tail(results)
    return [r for r in read_records(results) if r.target.get("name") == board]


async def _connect(board: Board, known_hosts: Path, trust_new_host: bool, timeout: float):
    import asyncssh

    options: dict[str, Any] = dict(port=board.port, username=board.user, connect_timeout=timeout)
    if board.key is not None:
        options["client_keys"] = [str(board.key)]
    if trust_new_host and not _known(known_hosts, board):
        key = await asyncio.wait_for(asyncssh.get_server_host_key(board.host, board.port), timeout)
        if key is None:
            raise RuntimeError(f"{board.name}: the server sent no host key")
        known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with open(known_hosts, "a") as f:  # the key is then checked like any other, now and next time
            f.write(f"{_host_pattern(board)} {key.export_public_key().decode().strip()}\n")
    options["known_hosts"] = str(known_hosts) if known_hosts.is_file() else ()
    return await asyncssh.connect(board.host, **options)


def _host_pattern(board: Board) -> str:
    return board.host if board.port == 22 else f"[{board.host}]:{board.port}"


def _known(known_hosts: Path, board: Board) -> bool:
    if not known_hosts.is_file():
        return False
    pattern = _host_pattern(board)
    return any(
        line.split(" ", 1)[0].split(",").count(pattern) for line in known_hosts.read_text().splitlines()
    )


async def _run(conn, args: list[str], where: str, timeout: float) -> str:
    """stdout of a remote command (arguments quoted); `RuntimeError` with its last stderr line otherwise."""
    proc = await conn.run(shlex.join(args), check=False, timeout=timeout)
    if proc.exit_status != 0:
        last = ((proc.stderr or "").strip().splitlines() or [f"exit status {proc.exit_status}"])[-1]
        raise RuntimeError(f"{where}: `{args[0]} ...` failed: {last[:200]}")
    return proc.stdout or ""


async def _probe(conn, board: Board, files: list[str], timeout: float) -> dict:
    return json.loads(await _run(conn, [board.python, "-c", PROBE, *files], board.name, timeout))


def _bundle_files(bundle: Path) -> dict[str, str | None]:
    """Relative path -> expected sha256 of every file the manifest lists, and of the manifest itself (a board
    checks them all; one without torch skips the .pt2 files, but they must be there and whole)."""
    files: dict[str, str | None] = {file: sha for file, sha, _ in listed_files(read_manifest(bundle))}
    files["manifest.json"] = sha256_file(bundle / "manifest.json")
    return files


@dataclass(frozen=True)
class Payload:
    """What goes to a board: the files of `root` to push (relative path -> sha256) and what the board's
    `edgekd bench` is given, relative to the pushed folder."""

    root: Path
    files: dict[str, str | None]
    target: str

    @property
    def key(self) -> str:
        """16 hex digits naming this payload's folder on a board."""
        listing = "\n".join(f"{rel}:{sha}" for rel, sha in sorted(self.files.items()))
        return hashlib.sha256(listing.encode()).hexdigest()[:16]


def payload(path: Path) -> Payload:
    """A bundle folder with every file its manifest lists; one model file of a bundle, with its bundle (its
    manifest entry, test data and reference outputs go too); or one bare model file, alone."""
    from benchmarks.plan import bare_model

    if path.is_dir():
        if not (path / "manifest.json").is_file():
            raise InputError(
                f"{path}: no manifest.json, so not a bundle; give a bundle folder or one model file "
                f"({suffixes_text()}) to measure on a board"
            )
        return Payload(path, _bundle_files(path), ".")
    bare_model(path)  # a file that is not a model is refused as local bench refuses it
    own = {path.name: sha256_file(path)}
    if (path.parent / "manifest.json").is_file():
        return Payload(path.parent, {**_bundle_files(path.parent), **own}, path.name)
    return Payload(path.parent, own, path.name)


async def _push(conn, board: Board, local: Path, remote: str, want: dict[str, str | None], timeout: float):
    """Send the files whose remote sha256 differs (to a temporary name, then renamed); check them all."""
    paths = [f"{remote}/{rel}" for rel in want]
    have = (await _probe(conn, board, paths, timeout))["files"]
    async with conn.start_sftp_client() as sftp:
        for rel, sha in want.items():
            dst = f"{remote}/{rel}"
            if have.get(dst) == sha:
                continue  # unchanged: not sent again
            await sftp.makedirs(dst.rsplit("/", 1)[0], exist_ok=True)
            await sftp.put(str(local / rel), dst + ".partial")
            await sftp.posix_rename(dst + ".partial", dst)
    got = (await _probe(conn, board, paths, timeout))["files"]
    for rel, sha in want.items():
        if got.get(f"{remote}/{rel}") != sha:
            raise RuntimeError(f"{board.name}: {remote}/{rel} does not match its sha256 after the copy")


async def _venv(conn, board: Board, info: dict, wheels: Callable[[dict], Path], timeout: float) -> str:
    """edgekd's venv on the board (reused when it was built from this edgekd's source); its bin folder."""
    from toolkit.fleet.wheelhouse import edgekd_build, edgekd_version

    version = edgekd_version()
    venv = f"{board.dir}/venv-{edgekd_build()}"
    found = await conn.run(
        shlex.join([f"{venv}/bin/python", "-c", VERSION_PROBE]), check=False, timeout=timeout
    )
    if found.exit_status == 0 and (found.stdout or "").strip() == version:
        return f"{venv}/bin"
    house = wheels(info)  # built here for the board's machine and Python, installed there offline
    remote_house = f"{board.dir}/wheelhouse/{house.name}"
    await _push(
        conn, board, house, remote_house, {p.name: sha256_file(p) for p in house.glob("*.whl")}, timeout
    )
    # installing takes minutes on a Pi or under qemu, not the seconds a probe or a copy gets
    install_timeout = max(timeout, INSTALL_TIMEOUT_S)
    await _run(conn, [board.python, "-m", "venv", "--clear", venv], board.name, install_timeout)
    pip = [f"{venv}/bin/python", "-m", "pip", "install", "-q", "--no-index", "--find-links", remote_house]
    await _run(conn, [*pip, "edgekd[bench]"], board.name, install_timeout)
    return f"{venv}/bin"


async def _reset_results(conn, board: Board, results: Path, remote: str, resume: bool) -> None:
    """The board's results file: with `resume`, the records that already arrived here (so the board
    measures only what is missing); otherwise empty."""
    async with conn.start_sftp_client() as sftp:
        await sftp.makedirs(remote.rsplit("/", 1)[0], exist_ok=True)
        kept = board_records(results, board.name) if resume else []
        async with sftp.open(remote, "w") as f:
            await f.write("".join(json.dumps(r.to_dict(), sort_keys=True) + "\n" for r in kept))


async def _stream(
    conn, board: Board, cmd: list[str], log: str, results: Path, run: BoardRun, on_event
) -> None:
    """Run the suite on the board; append each record here as its line arrives."""
    async with conn.create_process(f"{shlex.join(cmd)} 2> {shlex.quote(log)}") as proc:
        async for line in proc.stdout:
            if not line.startswith("{"):
                continue
            append_record(results, board_record(line, board))
            run.records += 1
            on_event(board.name, f"{run.records} record(s)")
        await proc.wait()
    if proc.exit_status != 0:
        tail = await conn.run(shlex.join(["tail", "-n", "1", log]), check=False)
        last = (tail.stdout or "").strip() or f"exit status {proc.exit_status}"
        raise RuntimeError(f"{board.name}: edgekd bench on the board: {last[:200]}")


async def _on_board(board: Board, sent: Payload, opts: dict, lock: asyncio.Lock, work) -> BoardRun:
    """Connect, push `sent`, set up edgekd's venv, then `await work(conn, run, python, bundle, run_dir)`."""
    import asyncssh

    run, t0, on_event, timeout = BoardRun(board), time.monotonic(), opts["on_event"], opts["timeout"]
    remote_bundle, remote_run = f"{board.dir}/bundles/{sent.key}", f"{board.dir}/runs/{sent.key}"
    async with lock:  # one suite per board at a time: measurements never overlap on a board
        try:
            async with await _connect(board, opts["known_hosts"], opts["trust_new_host"], timeout) as conn:
                on_event(board.name, f"connected to {board.address}")
                info = await _probe(conn, board, [], timeout)
                await _push(conn, board, sent.root, remote_bundle, sent.files, timeout)
                what = "bundle" if sent.target == "." else sent.target
                on_event(board.name, f"{what} in place ({info['machine']}, Python {info['python']})")
                bin_ = await _venv(conn, board, info, opts["wheels"], timeout)
                # `python -m`, not the venv's `edgekd` script: pip writes a /bin/sh launcher when the path has
                # spaces, and that shell would expand anything like $(...) in the board's folder name.
                await work(conn, run, f"{bin_}/python", f"{remote_bundle}/{sent.target}", remote_run)
        except (asyncssh.Error, OSError, RuntimeError, ValueError, asyncio.TimeoutError) as e:
            run.error = _one_line(e, board)
    run.seconds = time.monotonic() - t0
    return run


async def _bench_board(
    board: Board, sent: Payload, results: Path, opts: dict, lock: asyncio.Lock
) -> BoardRun:
    async def work(conn, run: BoardRun, python: str, bundle: str, remote_run: str) -> None:
        await _reset_results(conn, board, results, f"{remote_run}/results.jsonl", opts["resume"])
        cmd = [python, "-m", "toolkit.cli.main", "bench", bundle, "--results", f"{remote_run}/results.jsonl"]
        cmd += ["--stream", *opts["args"](board), *(["--resume"] if opts["resume"] else [])]
        await _stream(conn, board, cmd, f"{remote_run}/bench.log", results, run, opts["on_event"])

    return await _on_board(board, sent, opts, lock, work)


async def _profile_board(board: Board, sent: Payload, out: Path, opts: dict, lock: asyncio.Lock) -> BoardRun:
    async def work(conn, run: BoardRun, python: str, bundle: str, remote_run: str) -> None:
        remote_out = f"{remote_run}/profile"
        cmd = [python, "-m", "toolkit.cli.main", "profile", bundle, "--out", remote_out, *opts["args"](board)]
        await _run(conn, cmd, board.name, max(opts["timeout"], INSTALL_TIMEOUT_S))
        with tempfile.TemporaryDirectory(prefix="edgekd-profile-") as tmp:
            async with conn.start_sftp_client() as sftp:
                await sftp.get(f"{remote_out}/profiles.json", f"{tmp}/profiles.json")
            data = read_profiles(f"{tmp}/profiles.json")
        write_profiles(
            out / board.name / "profiles.json", replace(data, target=board_target(data.target, board))
        )
        run.records = 1

    return await _on_board(board, sent, opts, lock, work)


def _one_line(exc: BaseException, board: Board) -> str:
    import asyncssh

    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return f"{board.name} ({board.address}): host key not trusted ({exc}); check it, or --trust-new-host"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if text.startswith(board.name) else f"{board.name} ({board.address}): {text}"[:300]


def run_boards(
    boards: list[Board],
    path: Path,
    results: Path,
    *,
    args: Callable[[Board], list[str]],
    wheels: Callable[[dict], Path],
    known_hosts: Path,
    trust_new_host: bool = False,
    resume: bool = False,
    timeout: float = 30.0,
    on_event: Callable[[str, str], None] = lambda board, event: None,
) -> list[BoardRun]:
    """Benchmark `path` (a bundle, or one model file: `payload`) on every board at once, appending each
    board's records to `results` as they come."""
    sent = payload(path)  # a folder that is not a bundle is refused here, before any board is reached
    opts = dict(args=args, wheels=wheels, known_hosts=known_hosts, trust_new_host=trust_new_host)
    opts |= dict(resume=resume, timeout=timeout, on_event=on_event)

    return _each_board(boards, lambda board, lock: _bench_board(board, sent, results, opts, lock))


def profile_boards(boards: list[Board], bundle: Path, out: Path, **options: Any) -> list[BoardRun]:
    """`edgekd profile` of `bundle` on every board; each board's profiles.json lands in `out/<board>/`, its
    target named after the board as its records are."""
    sent = payload(bundle)
    opts = (
        dict(resume=False, on_event=lambda board, event: None, timeout=30.0, trust_new_host=False) | options
    )

    return _each_board(boards, lambda board, lock: _profile_board(board, sent, out, opts, lock))


def _each_board(boards: list[Board], job) -> list[BoardRun]:
    """`await job(board, lock)` on every board at once; one lock per host and port, so that two entries for
    one board never measure at the same time."""

    async def main() -> list[BoardRun]:
        locks: dict[tuple[str, int], asyncio.Lock] = {}
        jobs = [job(b, locks.setdefault((b.host, b.port), asyncio.Lock())) for b in boards]
        return list(await asyncio.gather(*jobs))

    return asyncio.run(main())


register_target_kind(TargetKind("ssh", run_boards, profile_boards))
