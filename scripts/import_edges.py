"""Count the import edges between edgekd's top-level parts (the folders of toolkit/, export/, benchmarks/,
scripts/, studies/ and toolkit's lone modules), and the imports written inside function bodies."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("toolkit", "export", "benchmarks")
FOLDERS = ("scripts", "studies")


def part_of_module(module: str) -> str | None:
    """The part a dotted module name belongs to (toolkit.report.rows -> toolkit.report), None if not ours."""
    head, *rest = module.split(".")
    if head not in PACKAGES:
        return None
    if head != "toolkit" or not rest:
        return head
    return f"toolkit.{rest[0]}"


def part_of_file(path: Path) -> str:
    """The part a source file belongs to."""
    rel = path.relative_to(ROOT)
    if rel.parts[0] in FOLDERS:
        return rel.parts[0]
    return part_of_module(".".join(rel.with_suffix("").parts))


def imported_modules(tree: ast.AST, package: str) -> list[tuple[str, bool]]:
    """(module, inside a function) for every import statement, relative ones resolved against `package`."""
    inner = {
        id(n)
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
        for n in ast.walk(f)
        if n is not f
    }
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, id(node) in inner) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names = [f"{base}.{a.name}" for a in node.names] if not node.module else [base]
            out += [(name, id(node) in inner) for name in names]
    return out


def edges() -> tuple[set[tuple[str, str]], int]:
    """The (from part, to part) edges and the number of imports inside function bodies."""
    found, in_functions = set(), 0
    files = [p for top in (*PACKAGES, *FOLDERS) for p in sorted((ROOT / top).rglob("*.py"))]
    for path in files:
        src = part_of_file(path)
        rel = path.relative_to(ROOT).with_suffix("")
        package = ".".join(rel.parts[:-1] if rel.name != "__init__" else rel.parts[:-1])
        for module, inside in imported_modules(ast.parse(path.read_text(), str(path)), package):
            dst = part_of_module(module)
            if dst is None:
                continue
            in_functions += inside
            if dst != src:
                found.add((src, dst))
    return found, in_functions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--list", action="store_true", help="print every edge")
    args = parser.parse_args()
    found, in_functions = edges()
    if args.list:
        for src, dst in sorted(found):
            print(f"{src} -> {dst}")
    parts = {p for edge in found for p in edge}
    print(
        f"{len(parts)} parts, {len(found)} import edges between them, "
        f"{in_functions} imports of edgekd modules inside function bodies"
    )


if __name__ == "__main__":
    main()
