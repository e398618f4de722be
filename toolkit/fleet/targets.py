"""Remote boards to benchmark on: `ssh://user@host[:port]`, edgekd's targets YAML, or an Ansible inventory.

edgekd's YAML: `boards: {NAME: {kind, host, user, port, key, suite, python, dir}}` (kind: ssh, the
default, or another registered target kind). An Ansible YAML inventory is
read unchanged: every host under `all` (and its `children` groups) with `ansible_host`, `ansible_user`,
`ansible_port`, `ansible_ssh_private_key_file`, `ansible_python_interpreter`, and `edgekd_suite` /
`edgekd_dir` where a lab wants them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from benchmarks.records import BenchRecord
from toolkit.errors import InputError, first_line

__all__ = ["Board", "BoardRun", "board_record", "board_target", "parse_target", "load_targets"]

# Names go into file names and records; refusing other characters keeps them out of shells and paths.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class Board(BaseModel):
    """One board reached over SSH, and how edgekd uses it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: str = "ssh"  # the registered target kind that reaches it (`toolkit.fleet`)
    host: str = Field(min_length=1)
    user: str | None = None
    port: int = Field(22, ge=1, le=65535)
    key: Path | None = None  # private key file; None: the SSH agent and ~/.ssh defaults
    suite: str | None = None  # a shipped suite name or a YAML file here; None: the run's bench settings
    python: str = "python3"  # the board's interpreter that creates edgekd's venv
    dir: str = ".edgekd"  # edgekd's folder on the board, relative to the login directory or absolute

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not NAME.match(v):
            raise InputError(f"board name {v!r}: use letters, digits, '.', '_' and '-' only")
        return v

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        from toolkit.fleet import TARGET_KINDS

        if v not in TARGET_KINDS:
            raise InputError(f"unknown target kind {v!r}; known: {', '.join(TARGET_KINDS.names())}")
        return v

    @property
    def address(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"


def _board(where: object, **fields: Any) -> Board:
    try:
        return Board(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise InputError(
            f"{where}: board {fields.get('name')!r}: {loc + ': ' if loc else ''}{err['msg']}"
        ) from None


@dataclass
class BoardRun:
    """What happened on one board (what a target kind's `run` returns per board)."""

    board: Board
    records: int = 0
    seconds: float = 0.0
    error: str | None = None


def board_target(target: dict[str, Any], board: Board) -> dict[str, Any]:
    """What the board measured itself as (native, emulated, ...), named after the board."""
    label = target.get("label") or target.get("kind", "native")
    return {**target, "name": board.name, "host": board.host, "label": f"{board.name}: {label}"}


def board_record(line: str, board: Board) -> BenchRecord:
    """A record line a board's `edgekd bench --stream` printed, its target named after the board."""
    record = BenchRecord.from_dict(json.loads(line))
    return replace(record, target=board_target(record.target, board))


def parse_target(url: str) -> Board:
    """`ssh://user@host[:port][/dir]` -> a board named after its host; the path, if any, is edgekd's folder
    on the board (absolute; default: .edgekd in the login directory)."""
    from toolkit.fleet import TARGET_KINDS

    parts = urlsplit(url)
    if parts.scheme not in TARGET_KINDS or not parts.hostname or parts.query or parts.fragment:
        raise InputError(f"{url}: expected {'|'.join(TARGET_KINDS.names())}://user@host[:port][/dir]")
    try:
        port = parts.port or 22
    except ValueError:
        raise InputError(f"{url}: the port is not a number from 1 to 65535") from None
    name = re.sub(r"[^A-Za-z0-9._-]", "-", parts.hostname)
    folder = parts.path if parts.path not in ("", "/") else None
    fields = dict(host=parts.hostname, user=parts.username, port=port, dir=folder)
    return _board(url, name=name, kind=parts.scheme, **fields)


def _ansible_hosts(group: dict, inherited: dict) -> dict[str, dict]:
    """Hosts of an Ansible group and its children, with group vars folded in (host vars win)."""
    vars_ = {**inherited, **(group.get("vars") or {})}
    hosts = {name: {**vars_, **(hv or {})} for name, hv in (group.get("hosts") or {}).items()}
    for child in (group.get("children") or {}).values():
        hosts.update(_ansible_hosts(child or {}, vars_))
    return hosts


def _from_ansible(path: Path, inventory: dict) -> list[Board]:
    hosts = _ansible_hosts(inventory["all"] or {}, {})
    return [
        _board(
            path,
            name=name,
            host=v.get("ansible_host", name),
            user=v.get("ansible_user"),
            port=v.get("ansible_port"),
            key=v.get("ansible_ssh_private_key_file"),
            python=v.get("ansible_python_interpreter"),
            suite=v.get("edgekd_suite"),
            dir=v.get("edgekd_dir"),
        )
        for name, v in hosts.items()
    ]


def load_targets(path: str | Path) -> list[Board]:
    """The boards a targets file lists (edgekd YAML or Ansible inventory); one-line `ValueError` if bad."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the targets file ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise InputError(f"{path}: invalid YAML ({first_line(e)})") from None
    if isinstance(data, dict) and isinstance(data.get("all"), dict):
        boards = _from_ansible(path, data)
    elif isinstance(data, dict) and isinstance(data.get("boards"), dict):
        boards = [_board(path, name=str(n), **(v or {})) for n, v in data["boards"].items()]
    else:
        raise InputError(f"{path}: expected `boards:` (edgekd) or `all:` (an Ansible YAML inventory)")
    if not boards:
        raise InputError(f"{path}: lists no boards")
    return boards
