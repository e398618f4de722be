"""The README's result table is today's: generated from the run record kept in docs/runs/demo/."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("readme_table", ROOT / "scripts" / "readme_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_table_is_generated_from_its_run_record():
    script = _script()
    readme = (ROOT / "README.md").read_text()
    assert readme.count(script.BEGIN) == 1 and readme.count(script.END) == 1
    assert script.replace_table(readme, script.table()) == readme, "run `python scripts/readme_table.py`"


def test_the_record_says_where_it_was_measured():
    provenance = json.loads((ROOT / "docs/runs/demo/provenance.json").read_text())
    assert len(provenance["commit"].split("+")[0]) >= 7 and provenance["command"] == "make demo"
    block = _script().table()
    assert f"at commit {provenance['commit']} on 20" in block and "cores usable" in block


def _readme_commands() -> list[str]:
    """Every `edgekd ...` and `make ...` command the README names in code, the result block left out."""
    readme = (ROOT / "README.md").read_text()
    script = _script()
    readme = readme[: readme.index(script.BEGIN)] + readme[readme.index(script.END) :]
    fenced = re.findall(r"```\w*\n(.*?)```", readme, re.S)
    spans = fenced + re.findall(r"`([^`\n]+)`", re.sub(r"```\w*\n.*?```", "", readme, flags=re.S))
    lines = [line.split("#")[0].strip() for span in spans for line in span.splitlines()]
    return [line for line in lines if re.match(r"^(edgekd|make) [a-z]", line)]


def test_every_make_target_the_readme_names_exists():
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    named = {line.split()[1] for line in _readme_commands() if line.startswith("make ")}
    assert {"demo", "test", "docs", "text-data"} <= named and named <= targets, named - targets


def test_every_edgekd_command_and_option_the_readme_names_exists():
    from typer.testing import CliRunner

    from toolkit.cli.main import app

    commands = [line for line in _readme_commands() if line.startswith("edgekd ")]
    assert len({c.split()[1] for c in commands}) >= 7, commands
    runner = CliRunner()
    for command in commands:
        name = command.split()[1]
        result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, f"{command}: {result.output}"
        for option in re.findall(r"(--[a-z][a-z-]*)", command):
            assert option in result.output, f"{command}: edgekd {name} has no {option}"


def test_every_readme_link_points_at_a_file():
    links = re.findall(r"\]\(([^)#]+)\)", (ROOT / "README.md").read_text())
    local = [link for link in links if not link.startswith("http")]
    assert local and [link for link in local if not (ROOT / link).is_file()] == []
