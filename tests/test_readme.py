"""The README's result table is today's: generated from the run record kept in docs/runs/demo/."""

from __future__ import annotations

import importlib.util
import json
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
