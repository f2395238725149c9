"""The HTML report in headless Chromium: tables fit a page and a printout; hostile values everywhere run no script."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from models.results.report_html import render_html
from models.results.reports import export_report
from models.settings import Settings

from .sample_runs import fill_store
from .test_export_safety import hostile, hostile_runs
from .test_report_html import _body, _chromium


def _dom(page: Path, profile: Path, *, width: int) -> str:
    """The DOM after the page's scripts ran, in a window `width` CSS pixels wide, with no network."""
    proc = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         f"--window-size={width},900", f"--user-data-dir={profile}", "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.parametrize("width", [1024, 700])
def test_tables_fit_the_page_without_sideways_scrolling(tmp_path: Path, width: int) -> None:
    """700 px is about an A4 page's printable width: a table wider than that is cut off in a printout."""
    runs = fill_store(tmp_path / "s.sqlite3")
    page = export_report(runs, tmp_path / "report.html", settings=Settings(), baseline=runs[0].id)
    body = _body(_dom(page, tmp_path / "profile", width=width))
    assert body["data-ready"] == "1" and int(body["data-tables"]) >= 5  # models, comparison (split), cost, runs
    assert body["data-wide-tables"] == "0"
    html = page.read_text()
    assert "overflow-x:auto" not in html and "@media print" in html
    assert html.count('<span class="tag">baseline</span>') >= 2  # the baseline row, in each comparison table


def test_a_hostile_value_in_every_field_runs_no_script(tmp_path: Path) -> None:
    """Script and event-handler HTML in every text field of the runs, the machine, the model and the currency."""
    value = hostile(tmp_path / "pwned")
    runs = hostile_runs(tmp_path, value)
    page = tmp_path / "hostile.html"
    page.write_text(render_html(runs, settings=Settings(currency=value, system_power_watts=60.0)), encoding="utf-8")
    dom = _dom(page, tmp_path / "profile", width=1024)
    body = _body(dom)
    assert body["data-ready"] == "1" and body["data-js-errors"] == "0"
    assert "data-pwned" not in body
    assert "break-even per month" in dom and re.search(r"&lt;script&gt;document\.body", dom)
