"""A report as a list of blocks (headings, paragraphs, notes, tables, images) for Markdown and HTML."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from toolkit.errors import InputError
from toolkit.report.table import Table, md_table

__all__ = ["Block", "heading", "para", "note", "table", "image", "blocks_to_markdown"]

Kind = Literal["h1", "h2", "h3", "p", "note", "table", "img"]


@dataclass(frozen=True)
class Block:
    """One piece of a report; `text` is Markdown-inline (for an image: its alt text)."""

    kind: Kind
    text: str = ""
    table: Table | None = None
    path: Path | None = None


def heading(text: str, level: int = 2) -> Block:
    """A section heading, h1 to h3."""
    if level not in (1, 2, 3):
        raise InputError(f"heading level must be 1, 2 or 3, got {level}")
    kinds: dict[int, Kind] = {1: "h1", 2: "h2", 3: "h3"}
    return Block(kinds[level], text)


def para(text: str) -> Block:
    """A paragraph."""
    return Block("p", text)


def note(text: str) -> Block:
    """A callout: a block quote in Markdown, a highlighted box in HTML."""
    return Block("note", text)


def table(t: Table) -> Block:
    """A table block."""
    return Block("table", table=t)


def image(path: Path, alt: str) -> Block:
    """A PNG next to the report (Markdown links it by name; HTML embeds it)."""
    return Block("img", alt, path=path)


def _md(block: Block) -> list[str]:
    """One block as Markdown lines."""
    if block.kind in ("h1", "h2", "h3"):
        return ["#" * int(block.kind[1]) + " " + block.text]
    if block.kind == "note":
        return [f"> {block.text}"]
    if block.kind == "table" and block.table is not None:
        return md_table(block.table)
    if block.kind == "img" and block.path is not None:
        return [f"![{block.text}]({block.path.name})"]
    return [block.text]


def blocks_to_markdown(blocks: list[Block]) -> str:
    """The blocks as one Markdown document, a blank line between blocks."""
    lines: list[str] = []
    for block in blocks:
        lines += _md(block) + [""]
    return "\n".join(lines)
