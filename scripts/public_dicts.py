"""Count public functions that take or return an untyped dict (`dict`, `dict[str, Any]`), per package."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNTYPED = {"dict", "dict[str, Any]", "dict[str, object]", "Dict[str, Any]", "Mapping[str, Any]"}


def _is_untyped(node: ast.expr | None) -> bool:
    if node is None:
        return False
    text = ast.unparse(node)
    return any(part.strip() in UNTYPED for part in text.replace("|", ",").split(",")) or text in UNTYPED


def _public(path: Path, node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return not node.name.startswith("_") and not any(p.startswith("_") for p in path.parts)


def dict_signatures(package: str) -> tuple[int, list[str]]:
    """(public functions, 'path:line name' of those with an untyped dict in their signature)."""
    total, hits = 0, []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or not _public(rel, node):
                continue
            total += 1
            args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
            if any(_is_untyped(a.annotation) for a in args) or _is_untyped(node.returns):
                hits.append(f"{rel}:{node.lineno} {node.name}")
    return total, hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("packages", nargs="*", default=["toolkit", "export", "benchmarks"])
    parser.add_argument("--list", action="store_true", help="name every function counted")
    args = parser.parse_args()
    for package in args.packages:
        total, hits = dict_signatures(package)
        print(f"{package}: {len(hits)} of {total} public functions take or return an untyped dict")
        if args.list:
            print("\n".join(f"  {h}" for h in hits))


if __name__ == "__main__":
    main()
