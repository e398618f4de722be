"""Print the longest functions in toolkit/, export/ and benchmarks/ (lines from `def` to the last line)."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def function_lengths(folders: list[str]) -> list[tuple[int, str]]:
    """(lines, "path:line name") for every function and method under `folders`."""
    out = []
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                    where = f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"
                    out.append((node.end_lineno - start + 1, where))
    return sorted(out, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--limit", type=int, default=60, help="flag functions longer than this")
    parser.add_argument("folders", nargs="*", default=["toolkit", "export", "benchmarks"])
    args = parser.parse_args()
    lengths = function_lengths(args.folders)
    for n, where in lengths[: args.top]:
        print(f"{n:5d}  {where}{'  OVER' if n > args.limit else ''}")
    over = sum(n > args.limit for n, _ in lengths)
    print(f"{len(lengths)} functions, {over} over {args.limit} lines")


if __name__ == "__main__":
    main()
