"""Boards over SSH (issue #18): real OpenSSH servers on 127.0.0.1 play two boards; edgekd pushes the
bundle, installs itself there from an offline wheelhouse, streams the records back, survives a dropped
connection and resumes; host keys are checked; names and paths never reach a shell unquoted."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from benchmarks.board import board_facts, parse_nvpmodel, parse_tegra_release, parse_throttled
from tests.sshd import keygen, start_sshd
from toolkit.fleet.targets import load_targets, parse_target

EDGEKD = [sys.executable, "-m", "toolkit.cli.main"]
needs_sshd = pytest.mark.skipif(not Path("/usr/sbin/sshd").exists(), reason="openssh-server not installed")


# --- targets and board facts (no SSH) -------------------------------------------------------------------


def test_targets_from_url_edgekd_yaml_and_ansible_inventory(tmp_path):
    b = parse_target("ssh://pi@raspberrypi.local:2222")
    assert (b.name, b.host, b.user, b.port) == ("raspberrypi.local", "raspberrypi.local", "pi", 2222)
    assert b.dir == ".edgekd" and parse_target("ssh://pi@pi4/srv/edgekd").dir == "/srv/edgekd"
    own = tmp_path / "boards.yaml"
    own.write_text("boards:\n  pi4: {host: 10.0.0.4, user: pi, suite: raspberry-pi, python: python3.11}\n")
    [pi4] = load_targets(own)
    assert (pi4.name, pi4.host, pi4.port, pi4.suite, pi4.python) == (
        "pi4",
        "10.0.0.4",
        22,
        "raspberry-pi",
        "python3.11",
    )
    inventory = {
        "all": {
            "vars": {"ansible_user": "lab"},
            "hosts": {"orin": {"ansible_host": "10.0.0.9", "ansible_port": 2200, "edgekd_suite": "jetson"}},
            "children": {
                "pis": {
                    "vars": {"ansible_python_interpreter": "/usr/bin/python3"},
                    "hosts": {
                        "pi5": {"ansible_host": "10.0.0.5", "ansible_ssh_private_key_file": "~/.ssh/lab"}
                    },
                }
            },
        }
    }
    (tmp_path / "inv.yaml").write_text(yaml.safe_dump(inventory))
    boards = {b.name: b for b in load_targets(tmp_path / "inv.yaml")}
    assert boards["orin"].address == "lab@10.0.0.9:2200" and boards["orin"].suite == "jetson"
    assert boards["pi5"].python == "/usr/bin/python3" and str(boards["pi5"].key) == "~/.ssh/lab"


@pytest.mark.parametrize(
    "text, message",
    [
        ("boards:\n  'pi; rm -rf ~': {host: h}\n", "board 'pi; rm -rf ~': name: Value error, board name"),
        ("boards:\n  pi: {host: h, port: 99999}\n", "board 'pi': port: Input should be less than or equal"),
        ("hosts: [a]\n", "expected `boards:` (edgekd) or `all:` (an Ansible YAML inventory)"),
        ("boards: {}\n", "lists no boards"),
        ("boards:\n  pi: {host: h, kind: adb}\n", "board 'pi': kind: Value error, unknown target kind 'adb'"),
    ],
)
def test_bad_targets_are_one_line(tmp_path, text, message):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as e:
        load_targets(path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="expected ssh://user@host"):
        parse_target("pi@host")


def test_emulated_arm_is_told_from_a_real_board():
    from benchmarks.suite import emulation

    host = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n"
    pi = "processor\t: 0\nFeatures\t: fp asimd evtstrm\nCPU implementer\t: 0x41\nModel\t: Raspberry Pi 4\n"
    assert emulation(host, machine="aarch64") == "qemu-user"  # qemu-user shows the host's cpuinfo
    assert emulation(pi, machine="aarch64") is None
    assert emulation(host, machine="x86_64") is None


def test_the_emulated_cpu_model_is_named(monkeypatch):
    from benchmarks.suite import emulation

    host = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n"
    monkeypatch.setenv("QEMU_CPU", "cortex-a76")
    assert emulation(host, machine="aarch64") == "qemu-user, cortex-a76"


def test_board_facts_from_captured_files(tmp_path):
    assert parse_throttled("throttled=0x50005") == {
        "raw": "0x50005",
        "flags": ["under-voltage", "throttled", "under-voltage has occurred", "throttling has occurred"],
    }
    assert parse_throttled("error=1") is None
    assert parse_nvpmodel("NV Power Mode: MAXN\n0\n") == {"name": "MAXN", "id": 0}
    release = "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug"
    assert parse_tegra_release(release) == {"l4t": "35.4.1", "board": "t186ref"}
    pi = tmp_path / "pi"
    (pi / "proc/device-tree").mkdir(parents=True)
    (pi / "proc/device-tree/model").write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")
    outputs = {"vcgencmd": "throttled=0x0"}
    facts = board_facts(pi, run=lambda cmd: outputs.get(cmd[0]))
    assert facts == {"model": "Raspberry Pi 4 Model B Rev 1.4", "throttled": {"raw": "0x0", "flags": []}}
    jetson = tmp_path / "jetson"
    (jetson / "etc").mkdir(parents=True)
    (jetson / "etc/nv_tegra_release").write_text(release)
    (jetson / "sys/class/devfreq/17000000.gpu").mkdir(parents=True)
    (jetson / "sys/class/devfreq/17000000.gpu/cur_freq").write_text("1300500000\n")
    facts = board_facts(jetson, run=lambda cmd: "NV Power Mode: 15W\n1" if cmd[0] == "nvpmodel" else None)
    assert facts["jetson"]["l4t"] == "35.4.1" and facts["power_mode"] == {"name": "15W", "id": 1}
    assert facts["clocks_mhz"] == {"17000000.gpu": 1300.5}
    assert board_facts(tmp_path / "plain-pc", run=lambda cmd: None) == {}  # nothing there: nothing faked


# --- real SSH on 127.0.0.1 ------------------------------------------------------------------------------


def _bench(path: Path, targets: Path, known_hosts: Path, results: Path, *extra: str) -> subprocess.Popen:
    args = ["bench", str(path), "--targets", str(targets), "--known-hosts", str(known_hosts)]
    args += ["--results", str(results), "--repeats", "2", "--min-runs", "5", "--min-time", "0", *extra]
    return subprocess.Popen([*EDGEKD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _by_board(results: Path) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    if results.is_file():
        for line in results.read_text().splitlines():
            r = json.loads(line)
            key = (r["model"], r["format"], r["precision"], r["backend"], r["threads"], r["round"])
            out.setdefault(r["target"]["name"], []).append(key)
    return out


def _drop_connections(board) -> None:
    """Kill the server's per-connection processes (and the suite they run): the link drops mid-suite."""
    import psutil

    for child in psutil.Process(board.proc.pid).children(recursive=True):
        child.kill()


def _assert_installed_from_lock(board_dir: Path, machine: str) -> None:
    """The board's venv holds exactly the versions of its lock (locks/bench-<machine>-py<X.Y>.txt), read
    from its dist-info folders (an emulated board's python cannot run outside its root)."""
    from toolkit.fleet.wheelhouse import board_lock

    site = max(board_dir.glob("venv-*/lib/python3.*/site-packages"), key=lambda p: p.stat().st_mtime)
    lock = board_lock(machine, site.parent.name.removeprefix("python"))
    assert lock is not None, f"no lock for {machine} {site.parent.name}"
    pins = dict(re.findall(r"^([a-z0-9_.-]+)==([^ \\\n]+)", lock.read_text(), re.M))
    dists = (d.name.removesuffix(".dist-info").rsplit("-", 1) for d in site.glob("*.dist-info"))
    got = {name.lower().replace("_", "-"): version for name, version in dists}
    assert {name: got.get(name) for name in pins} == pins
    assert {"onnxruntime", "numpy", "ai-edge-litert"} <= set(pins)


@needs_sshd
@pytest.mark.slow
@pytest.mark.usefixtures("package_index")
def test_two_boards_at_once_a_dropped_link_and_resume(tiny_run, tmp_path):
    key = keygen(tmp_path / "client")
    a, b = start_sshd(tmp_path / "sshd-a", key), start_sshd(tmp_path / "sshd-b", key)
    try:
        known = tmp_path / "known_hosts"
        known.write_text(f"{a.known_hosts_line()}\n{b.known_hosts_line()}\n")
        weird = tmp_path / "board a" / "$(touch PWNED); x"  # a path a shell would run, given the chance
        hosts = {
            "loop-a": {"ansible_port": a.port, "edgekd_dir": str(weird)},
            "loop-b": {"ansible_port": b.port, "edgekd_dir": str(tmp_path / "board-b")},
        }
        common = {
            "ansible_host": "127.0.0.1",
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(key),
        }
        inventory = {
            "all": {"vars": {**common, "ansible_python_interpreter": "/usr/bin/python3"}, "hosts": hosts}
        }
        targets = tmp_path / "inventory.yaml"
        targets.write_text(yaml.safe_dump(inventory))
        results = tmp_path / "results.jsonl"
        files = [m for m in json.loads((tiny_run / "bundle" / "manifest.json").read_text())["models"]]
        expected = 2 * sum(m["format"] != "torch" for m in files)  # 2 rounds of every ONNX/TFLite file
        (Path.home() / "PWNED").unlink(missing_ok=True)
        t0 = time.monotonic()
        proc = _bench(tiny_run, targets, known, results)
        while len(_by_board(results).get("loop-b", [])) < 3:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() - t0 < 600
            time.sleep(0.05)
        _drop_connections(b)
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 1, err
        assert "loop-a" in err.split("Boards")[-1] and err.count(" ok ") == 1, err[-3000:]
        assert [line for line in err.splitlines() if line.startswith("error:")] == [err.splitlines()[-1]]
        assert err.splitlines()[-1].startswith("error: loop-b (root@127.0.0.1:")
        got = _by_board(results)
        assert len(got["loop-a"]) == expected and 3 <= len(got["loop-b"]) < expected
        kept_b = list(got["loop-b"])
        proc = _bench(tiny_run, targets, known, results, "--resume")
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        got = _by_board(results)
        assert len(got["loop-a"]) == expected  # nothing was missing there: nothing measured again
        assert Counter(got["loop-b"]) == Counter(set(got["loop-b"])) and len(got["loop-b"]) == expected
        assert got["loop-b"][: len(kept_b)] == kept_b  # every record that arrived before the drop is kept
        assert (weird / "bundles").is_dir() and not list(tmp_path.rglob("PWNED"))
        assert not (Path.cwd() / "PWNED").exists() and not (Path.home() / "PWNED").exists()  # the login dir
        rec = json.loads(results.read_text().splitlines()[0])
        assert (
            rec["target"]["label"].startswith(f"{rec['target']['name']}: native") and rec["machine"]["python"]
        )
        _assert_installed_from_lock(tmp_path / "board-b", "x86_64")
    finally:
        a.stop()
        b.stop()


@needs_sshd
def test_changed_host_key_is_refused_and_a_new_one_needs_trust(tmp_path, tiny_bundle_stub):
    key = keygen(tmp_path / "client")
    board = start_sshd(tmp_path / "sshd", key)
    try:
        targets = tmp_path / "t.yaml"
        spec = {"host": "127.0.0.1", "port": board.port, "user": "root", "key": str(key)}
        targets.write_text(yaml.safe_dump({"boards": {"lab-pi": {**spec, "python": "/nonexistent/python3"}}}))
        other = keygen(tmp_path / "impostor")
        known = tmp_path / "known_hosts"
        known.write_text(f"[127.0.0.1]:{board.port} {Path(str(other) + '.pub').read_text().strip()}\n")
        proc = _bench(tiny_bundle_stub, targets, known, tmp_path / "r.jsonl")
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1
        assert err.splitlines()[-1].startswith(
            f"error: lab-pi (root@127.0.0.1:{board.port}): host key not trusted"
        )
        known.write_text("")  # a host never seen: refused too, unless trusted
        proc = _bench(tiny_bundle_stub, targets, known, tmp_path / "r.jsonl")
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1 and "host key not trusted" in err.splitlines()[-1]
        proc = _bench(tiny_bundle_stub, targets, known, tmp_path / "r.jsonl", "--trust-new-host")
        _, err = proc.communicate(timeout=120)
        assert (
            known.read_text().split() == board.known_hosts_line().split()[:3]
        )  # remembered, checked from now
        # connected: it is the board's (missing) Python that stops it now, in one line naming the board
        assert proc.returncode == 1 and "lab-pi" in err.splitlines()[-1] and "/nonexistent/python3" in err
    finally:
        board.stop()


@needs_sshd
@pytest.mark.slow
@pytest.mark.usefixtures("package_index")
def test_one_model_file_on_a_board_gives_the_records_of_local_bench(tiny_run, tmp_path):
    """`edgekd bench FILE --target ssh://...`: a bare file goes alone, a bundle's file with its bundle (so its
    accuracy and output check come back), with the fields local `bench FILE` writes; an unreachable host
    and a folder that is not a bundle are one line each."""
    bare = tmp_path / "bare" / "model.onnx"
    bare.parent.mkdir()
    shutil.copy(tiny_run / "bundle" / "student_kd.onnx", bare)
    home = tmp_path / "home"  # --target takes the SSH defaults: the key as ~/.ssh/id_ed25519
    (home / ".ssh").mkdir(parents=True)
    key = keygen(home / ".ssh" / "id_ed25519")
    (home / ".cache").symlink_to(Path.home() / ".cache")  # the wheelhouse built once, as for a user
    env = {**os.environ, "HOME": str(home)}
    board = start_sshd(tmp_path / "sshd", key)
    try:
        known = tmp_path / "known_hosts"
        known.write_text(board.known_hosts_line() + "\n")
        url = f"ssh://root@127.0.0.1:{board.port}{tmp_path / 'board'}"  # the path: edgekd's folder there
        flags = ["--known-hosts", str(known), "--repeats", "1", "--min-runs", "5", "--min-time", "0"]
        remote = {}
        for name, path in (("bare", bare), ("in-bundle", tiny_run / "bundle" / "student_kd.onnx")):
            out = tmp_path / f"{name}.jsonl"
            proc = subprocess.run(
                [*EDGEKD, "bench", str(path), "--target", url, "--results", str(out), *flags],
                capture_output=True, text=True, timeout=600, env=env,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stderr[-3000:]
            (remote[name],) = [json.loads(line) for line in out.read_text().splitlines()]
        local_out = tmp_path / "local.jsonl"
        local = subprocess.run([*EDGEKD, "bench", str(bare), "--results", str(local_out), *flags[2:]],
                               capture_output=True, text=True, timeout=600)  # fmt: skip
        assert local.returncode == 0, local.stderr[-3000:]
        (here,) = [json.loads(line) for line in local_out.read_text().splitlines()]
        for rec in remote.values():
            assert set(rec) == set(here) and rec["target"]["name"] == "127.0.0.1"
            assert rec["latency"]["count"] >= 5 and rec["format"] == "onnx"
        assert remote["bare"]["model"] == here["model"] == "model" and remote["bare"]["accuracy"] is None
        shipped = _manifest_accuracy(tiny_run, "student_kd.onnx")
        assert remote["in-bundle"]["accuracy"] == pytest.approx(shipped)
    finally:
        board.stop()
    sent = sorted(sorted(f.name for f in d.iterdir()) for d in (tmp_path / "board" / "bundles").iterdir())
    assert ["model.onnx"] in sent and len(sent) == 2  # the bare file went alone; the bundle's file with it
    dead = subprocess.run([*EDGEKD, "bench", str(bare), "--target", url, *flags],
                          capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    lines = [line for line in dead.stderr.splitlines() if line.strip()]
    assert dead.returncode == 1 and "Traceback" not in dead.stderr and len(lines) == 1, dead.stderr
    assert lines[0].startswith(f"error: 127.0.0.1 (root@127.0.0.1:{board.port}): "), lines
    folder = subprocess.run([*EDGEKD, "bench", str(tmp_path / "sshd"), "--target", url, *flags],
                            capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert folder.returncode == 1 and folder.stderr.strip() == (
        f"error: {tmp_path / 'sshd'}: no manifest.json, so not a bundle; give a bundle folder or one model "
        "file (.onnx, .pte, .tflite or .pt2) to measure on a board"
    )


@needs_sshd
@pytest.mark.slow
@pytest.mark.usefixtures("package_index")
def test_edgekd_profile_on_a_board_comes_back_named_after_it(tiny_run, tmp_path):
    """`edgekd profile --targets`: the board profiles every file in its own venv; profiles.json and profile.md
    come back under the board's name, its target label kept (a native x86 board here)."""
    from benchmarks.profile import read_profiles

    key = keygen(tmp_path / "client")
    board = start_sshd(tmp_path / "sshd", key)
    try:
        known = tmp_path / "known_hosts"
        known.write_text(board.known_hosts_line() + "\n")
        spec = {"host": "127.0.0.1", "port": board.port, "user": "root", "key": str(key)}
        targets = tmp_path / "t.yaml"
        targets.write_text(
            yaml.safe_dump({"boards": {"x86-board": {**spec, "dir": str(tmp_path / "board")}}})
        )
        out = tmp_path / "profiles"
        cmd = [
            *EDGEKD,
            "profile",
            str(tiny_run / "bundle"),
            "--targets",
            str(targets),
            "--known-hosts",
            str(known),
        ]
        proc = subprocess.run(
            [*cmd, "--runs", "20", "--out", str(out)], capture_output=True, text=True, timeout=900
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        board.stop()
    data = read_profiles(out / "x86-board" / "profiles.json")
    assert data.target["name"] == "x86-board" and data.target["label"].startswith(
        "x86-board: native: this CPU ("
    )
    shipped = {p.name for p in (tiny_run / "bundle").iterdir() if p.suffix in (".onnx", ".tflite")}
    assert {p.path.rsplit("/", 1)[-1] for p in data.profiles} == shipped
    assert all(p.timed and p.runs == 20 and p.ops for p in data.profiles if p.format == "onnx")
    text = (out / "x86-board" / "profile.md").read_text()
    assert "## Where the time goes" in text and data.target["label"] in text


def _manifest_accuracy(run: Path, file: str) -> float:
    manifest = json.loads((run / "bundle" / "manifest.json").read_text())
    return next(m["parity"]["accuracy"] for m in manifest["models"] if m["file"] == file)


@pytest.fixture
def tiny_bundle_stub(tmp_path) -> Path:
    """A minimal valid bundle (one small ONNX file) for tests that stop before measuring."""
    from tests.test_bad_input import _bundle

    return _bundle(tmp_path / "bundle")


def test_machine_facts_say_board_only_where_there_is_one():
    from benchmarks.machine import machine_facts

    facts = machine_facts()
    assert "board" not in facts or facts["board"]  # never an empty or invented board entry
    assert os.path.exists("/proc/device-tree/model") == ("model" in facts.get("board", {}))
    assert shutil.which("python3")


@needs_sshd
@pytest.mark.slow
@pytest.mark.arm
@pytest.mark.usefixtures("package_index")
def test_bundle_on_an_emulated_arm64_board(tiny_run, tmp_path):
    """A real aarch64 userland (Debian trixie arm64 under qemu-user) reached over SSH: edgekd installs its
    aarch64 wheels there, every ONNX/TFLite/ExecuTorch file runs (`.pte` through the torch-free runtime),
    gives the x86 outputs within its parity tolerance, scores as on x86, and is labelled emulated, never a
    board, in the records and in `report --compare`."""
    from tests import arm64

    if (why := arm64.missing()) is not None:
        pytest.skip(f"no arm64 root: {why}")
    root = arm64.arm64_root()
    shutil.rmtree(root / "root" / "edgekd-test", ignore_errors=True)
    x86_run = tmp_path / "x86-run"  # the tiny run re-exported with .pte files beside the ONNX/TFLite ones
    shutil.copytree(tiny_run, x86_run, ignore=shutil.ignore_patterns("bench", "report", "profile", "bundle*"))
    config = yaml.safe_load((x86_run / "config.yaml").read_text())
    config["export"]["formats"] = ["onnx", "tflite", "pte", "torch"]
    (x86_run / "config.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run([*EDGEKD, "export", str(x86_run)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    arm_run = tmp_path / "arm-run"  # the x86 run's files, with the board's results as its bench
    shutil.copytree(x86_run, arm_run, ignore=shutil.ignore_patterns("bench", "report", "profile"))
    results = arm_run / "bench" / "results.jsonl"
    key = keygen(tmp_path / "client")
    board = start_sshd(tmp_path / "sshd", key, chroot=root, env={"QEMU_CPU": arm64.QEMU_CPU})
    try:
        known = tmp_path / "known_hosts"
        known.write_text(board.known_hosts_line() + "\n")
        spec = {"host": "127.0.0.1", "port": board.port, "user": "root", "key": str(key)}
        targets = tmp_path / "t.yaml"
        targets.write_text(yaml.safe_dump({"boards": {"qemu-arm64": {**spec, "dir": "/root/edgekd-test"}}}))
        proc = _bench(x86_run / "bundle", targets, known, results, "--repeats", "1")
        _, err = proc.communicate(timeout=3000)  # under qemu: ~6 min of pip install, ~1 min per file
        assert proc.returncode == 0, err[-3000:]
        # the same profile on the emulated board, in the venv the bench installed
        prof = arm_run / "profile"  # profile/qemu-arm64/profiles.json: `report --compare` finds it there
        cmd = [
            *EDGEKD,
            "profile",
            str(x86_run / "bundle"),
            "--targets",
            str(targets),
            "--known-hosts",
            str(known),
        ]
        proc = subprocess.run(
            [*cmd, "--runs", "20", "--out", str(prof)], capture_output=True, text=True, timeout=1800
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        board.stop()
    _assert_profiled_emulated(prof / "qemu-arm64" / "profiles.json")
    _assert_installed_from_lock(root / "root" / "edgekd-test", "aarch64")
    records = [json.loads(line) for line in results.read_text().splitlines()]
    manifest = json.loads((x86_run / "bundle" / "manifest.json").read_text())
    parity = {(m["name"], m["format"], m["precision"]): m["parity"] for m in manifest["models"]}
    shipped = {k for k in parity if k[1] != "torch"}
    assert {(r["model"], r["format"], r["precision"]) for r in records} == shipped
    assert {k[1] for k in shipped} == {"onnx", "tflite", "pte"}
    assert {r["backend"] for r in records if r["format"] == "pte"} == {"executorch-numpy"}
    print(f"\noutputs on aarch64 against {manifest['reference_outputs']['machine']}:")
    for r in sorted(records, key=lambda r: r["file"]):
        assert r["machine"]["arch"] == "aarch64" and r["target"]["kind"] == "emulated"
        assert (
            r["target"]["label"]
            == f"qemu-arm64: emulated aarch64 (qemu-user, {arm64.QEMU_CPU}) on {r['machine']['cpu_model']}"
        )
        x86, check = parity[(r["model"], r["format"], r["precision"])], r["output_check"]
        print(f"  {Path(r['file']).name:28} {r['backend']:16} max |diff| {check['max_abs_diff']:.3g}"
              f"  top-1 agreement {check['top1_agreement']:.4f}  tolerance {check['tolerance']}")  # fmt: skip
        assert check["passed"] and check["rows"] == 300, (r["file"], check)
        # the same test images, scored on aarch64 kernels: at most one image in 100 may flip (int8 rounding)
        assert abs(r["accuracy"] - x86["accuracy"]) <= 0.01, (r["model"], r["format"], r["precision"])
    shutil.copytree(tiny_run / "bench", x86_run / "bench")  # the x86 side: the tiny run's records, a profile
    proc = subprocess.run(
        [*EDGEKD, "profile", str(x86_run / "bundle"), "--runs", "20"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "compare"
    proc = subprocess.run([*EDGEKD, "report", "--compare", str(x86_run), str(arm_run), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = (out / "compare.md").read_text()
    header = next(line for line in text.splitlines() if "arm-run ·" in line)
    assert (
        "x86-run ·" in header and f"*qemu-arm64: emulated aarch64 (qemu-user, {arm64.QEMU_CPU}) on" in header
    )
    side = text[text.index("## Where the time goes, side by side") :]
    assert (
        "| x86-run · native: this CPU (" in side
        and "arm-run · qemu-arm64: emulated aarch64 (qemu-user" in side
    )
    assert "| student_kd_int8.onnx | QLinearConv |" in side
    assert "arm-run · native" not in side  # the board's profile only: the x86 one stays in the x86 run
    assert "## Outputs against the export machine" in text and "**OUTPUTS DIFFER**" not in text
    assert "| Max abs diff |" in text
    print(text[text.index("## Outputs against") :])


def _assert_profiled_emulated(path: Path) -> None:
    """The aarch64 profile: labelled emulated, never a board; ONNX nodes timed (emulated times), and the op
    placement and dtypes printed, which emulation does not change."""
    from benchmarks.profile import read_profiles
    from tests.arm64 import QEMU_CPU
    from toolkit.report.time_breakdown import profile_markdown

    data = read_profiles(path)
    assert data.machine["arch"] == "aarch64" and data.target["kind"] == "emulated"
    assert data.machine["int8_dot_product"] == ["asimddp"]  # the emulated Cortex-A76's, not the x86 host's
    assert data.target["label"].startswith(f"qemu-arm64: emulated aarch64 (qemu-user, {QEMU_CPU}) on ")
    assert all(p.timed and p.ops for p in data.profiles if p.format == "onnx")
    print("\n" + profile_markdown(data))
