"""Blocks → one self-contained HTML page: inline CSS, a sortable table, PNGs embedded as data URIs.

A stdlib `string.Template`, not Jinja: the page is one small template and Jinja is not an edgekd
dependency. Every piece of text goes through `html.escape`; nothing is fetched from the network.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from string import Template
from typing import Any

from toolkit.report.blocks import Block
from toolkit.report.table import Table

__all__ = ["blocks_to_html", "inline_html", "table_html", "SORT_SCRIPT"]

_STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2430;
       margin: 24px auto; max-width: 1600px; padding: 0 16px; }
h1 { font-size: 26px; } h2 { margin-top: 32px; border-bottom: 1px solid #d8dde6; } h3 { font-size: 17px; }
code { background: #f1f3f6; padding: 0 3px; border-radius: 3px; }
.note { background: #fff6dd; border-left: 4px solid #e0a800; padding: 8px 12px; margin: 12px 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 12px; margin: 8px 0; }
th, td { border: 1px solid #d8dde6; padding: 3px 5px; white-space: nowrap; }
th { background: #eef1f6; white-space: normal; vertical-align: bottom; }
table.sortable th[data-col] { cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #f8f9fb; } tbody tr:hover { background: #e8f0fe; }
figure { margin: 12px 0 24px; } figure img { max-width: 100%; height: auto; border: 1px solid #e3e6eb; }
"""

# Numeric-aware and stable; cells carry their raw value in data-v; missing values sort last both ways.
SORT_SCRIPT = """
(function () {
  function key(cell) {
    return cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent.trim();
  }
  function compare(a, b) {
    var x = Number(a), y = Number(b);
    if (!isNaN(x) && !isNaN(y)) return x - y;
    return a.localeCompare(b, undefined, {numeric: true, sensitivity: "base"});
  }
  function sortBy(th) {
    var table = th.closest("table"), body = table.tBodies[0], col = Number(th.getAttribute("data-col"));
    var asc = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("th[data-col]").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r, s) {
      var a = key(r.cells[col]), b = key(s.cells[col]);
      if (a === "" || b === "") return (a === "") - (b === "");
      return asc ? compare(a, b) : compare(b, a);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll("table.sortable th[data-col]").forEach(function (th) {
    th.addEventListener("click", function () { sortBy(th); });
  });
  var m = /^#sort=(\\d+)(-desc)?$/.exec(location.hash);  // a link can open the page sorted
  var th = m && document.querySelector('table.sortable th[data-col="' + m[1] + '"]');
  if (th) { th.click(); if (m[2]) th.click(); }
})();
"""

_PAGE = Template(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>$style</style>
</head>
<body>
$body
<script>$script</script>
</body>
</html>
"""
)


def inline_html(text: str) -> str:
    """Escape Markdown-inline text and turn its **bold**, *italic* and `code` into HTML."""
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"\*([^*]+?)\*", r"<em>\1</em>", out)


def _value_attr(value: Any, numeric: bool) -> str:
    """The data-v attribute the sort script reads; empty for a missing number."""
    if numeric:
        return ' data-v=""' if value is None else f' data-v="{html.escape(repr(value))}"'
    return "" if value is None else f' data-v="{html.escape(str(value))}"'


def _group_row(table: Table) -> str:
    """The upper header line of a grouped table: one cell spanning each group's columns."""
    cells = "".join(
        f'<th colspan="{span}">{inline_html(label)}</th>' if span > 1 else f"<th>{inline_html(label)}</th>"
        for label, span in table.groups
    )
    return f"<tr>{cells}</tr>"


def table_html(table: Table) -> str:
    """A sortable table: header cells carry their column index, body cells their raw value."""
    numeric = table.numeric or [False] * len(table.headers)
    cls = [' class="num"' if n else "" for n in numeric]
    head = "".join(
        f'<th data-col="{j}"{cls[j]} title="click to sort">{inline_html(h)}</th>'
        for j, h in enumerate(table.headers)
    )
    body = []
    for i, row in enumerate(table.cells):
        values = table.values[i] if table.values else [None] * len(row)
        tds = "".join(
            f"<td{cls[j]}{_value_attr(values[j], numeric[j]) if table.values else ''}>{inline_html(c)}</td>"
            for j, c in enumerate(row)
        )
        body.append(f"<tr>{tds}</tr>")
    groups = _group_row(table) if table.groups else ""
    return (
        f'<div class="scroll"><table class="sortable"><thead>{groups}<tr>{head}</tr></thead>'
        f"<tbody>\n" + "\n".join(body) + "\n</tbody></table></div>"
    )


def _image_html(path: Path, alt: str) -> str:
    """A PNG embedded as a base64 data URI, so the page needs no files next to it."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}"></figure>'


def _block_html(block: Block) -> str:
    """One block as HTML."""
    if block.kind in ("h1", "h2", "h3"):
        return f"<{block.kind}>{inline_html(block.text)}</{block.kind}>"
    if block.kind == "note":
        return f'<div class="note">{inline_html(block.text)}</div>'
    if block.kind == "table" and block.table is not None:
        return table_html(block.table)
    if block.kind == "img" and block.path is not None:
        return _image_html(block.path, block.text)
    return f"<p>{inline_html(block.text)}</p>"


def blocks_to_html(blocks: list[Block], *, title: str) -> str:
    """The blocks as one standalone HTML page (inline CSS and JS, images embedded)."""
    body = "\n".join(_block_html(b) for b in blocks)
    return _PAGE.substitute(title=html.escape(title), style=_STYLE, body=body, script=SORT_SCRIPT)
