"""report.html: self-contained, every row in a sortable table, and it renders in a real headless Chromium."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.report_data import RECORDS, write_run
from toolkit.report import ReportResult, build_report
from toolkit.report.html_out import inline_html

P50_COLUMN = 13  # index of "p50 ms [95% CI]" in the results table


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> ReportResult:
    return build_report(write_run(tmp_path_factory.mktemp("html") / "run"))


def test_page_is_self_contained(report: ReportResult) -> None:
    page = report.html_path.read_text()
    links = re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']*)""", page)
    assert links and not [u for u in links if u.startswith(("http://", "https://", "//"))]
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == len(report.plot_paths) == 7  # 3 per target, 2 targets, plus the overview
    for uri in images:
        assert uri.startswith("data:image/png;base64,")
        assert base64.b64decode(uri.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    for external in ("<link", "@import", "url(", "<script src", "<iframe"):
        assert external not in page, external


def test_page_has_every_row_the_script_and_the_facts(report: ReportResult) -> None:
    page = report.html_path.read_text()
    results = page.split('<table class="sortable">')[1].split("</table>")[0]
    assert results.count("<tr>") == len(RECORDS) + 1  # header line + one per row
    assert '<td data-v="">–</td>' not in results  # missing numbers are still shown as a dash
    assert "<td><strong>teacher</strong></td><td>onnx</td><td>fp32</td><td>onnxruntime</td>" in results
    # student_kd onnx fp32 p50 with its interval; the raw value is kept for sorting.
    assert '<td class="num" data-v="0.1">0.100 [0.0980–0.102]</td>' in results
    assert results.count("<td><em>constrained local CPU</em></td>") == 1
    assert "under emulation or resource limits" in page  # the constrained-target note
    assert 'addEventListener("click"' in page and f'data-col="{P50_COLUMN}"' in page
    for fact in ("Test CPU 9000 (2 cores usable)", "<code>min_runs</code>=100", "onnxruntime 1.20.1"):
        assert fact in page, fact
    assert "<h2>Recommendation</h2>" in page and "<strong>PARITY CHECK FAILED</strong>" in page


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("**a** *b* `c`", "<strong>a</strong> <em>b</em> <code>c</code>"),
        ("<script>x & y</script>", "&lt;script&gt;x &amp; y&lt;/script&gt;"),
        ('say "hi"', "say &quot;hi&quot;"),
    ],
    ids=["markup", "escaped", "quotes"],
)
def test_inline_html_escapes_then_marks_up(text: str, html: str) -> None:
    assert inline_html(text) == html


class _Rows(HTMLParser):
    """Collects the sort values (data-v, else the text) of the first sortable table's body rows."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._where = "before"  # before → body → after the first tbody
        self._value: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tbody" and self._where == "before":
            self._where = "body"
        elif self._where == "body" and tag == "tr":
            self.rows.append([])
        elif self._where == "body" and tag == "td":
            self._value, self._text = dict(attrs).get("data-v"), []

    def handle_data(self, data: str) -> None:
        self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._where == "body" and tag == "td":
            self.rows[-1].append(self._value if self._value is not None else "".join(self._text).strip())
        elif self._where == "body" and tag == "tbody":
            self._where = "after"


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    pytest.skip("chromium not installed: apt-get install chromium")


def _headless(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium offline with a throwaway profile; fail the test on a non-zero exit."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    cmd = [_chromium(), *flags, f"--user-data-dir={profile}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_chromium_renders_a_non_blank_page(report: ReportResult, tmp_path: Path) -> None:
    import matplotlib.image

    png = tmp_path / "shot.png"
    _headless(tmp_path, "--window-size=1400,2000", f"--screenshot={png}", report.html_path.as_uri())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(png)[..., :3]
    assert pixels.shape[:2] == (2000, 1400)
    assert pixels.std() > 0.1 and (pixels.min(axis=2) < 0.5).mean() > 0.01  # text, table lines and plots


@pytest.mark.parametrize(
    ("fragment", "ascending"),
    [("", None), (f"#sort={P50_COLUMN}", True), (f"#sort={P50_COLUMN}-desc", False)],
    ids=["as-written", "p50-ascending", "p50-descending"],
)
def test_chromium_dom_has_rows_sorted_by_the_script(
    report: ReportResult, tmp_path: Path, fragment: str, ascending: bool | None
) -> None:
    dom = _headless(tmp_path, "--dump-dom", report.html_path.as_uri() + fragment).stdout
    parser = _Rows()
    parser.feed(dom)
    assert len(parser.rows) == len(RECORDS)
    p50 = [float(row[P50_COLUMN].split()[0]) for row in parser.rows]  # "0.100 [0.0980–0.102]"
    if ascending is None:  # as written: the report's own order, teacher first
        assert parser.rows[0][0] == "teacher" and p50 == [r.p50_ms for r in report.rows]
    else:
        assert p50 == sorted(p50, reverse=not ascending) and p50 != [r.p50_ms for r in report.rows]
