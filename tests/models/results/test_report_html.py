"""The HTML report, rendered in headless Chromium: it loads without script errors and draws every chart."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from models.results.compare import compare_runs
from models.results.report_html import render_html
from models.results.reports import export_report
from models.settings import Settings

from .sample_runs import fill_store


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("Headless Chromium is needed to test the HTML report and was not found on PATH; "
                "install it (Debian/Ubuntu: `apt-get install -y chromium`). CI installs it.")


def _dump_dom(page: Path, profile: Path) -> str:
    """The page's DOM after load, scripts run, with no network and a throwaway profile."""
    proc = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         f"--user-data-dir={profile}", "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _body(dom: str) -> dict[str, str]:
    tag = re.search(r"<body([^>]*)>", dom)
    assert tag, dom[:500]
    return dict(re.findall(r'([\w-]+)="([^"]*)"', tag.group(1)))


def test_the_report_loads_without_errors_and_draws_its_charts(tmp_path: Path) -> None:
    runs = fill_store(tmp_path / "s.sqlite3")
    page = export_report(runs, tmp_path / "report.html", settings=Settings())
    dom = _dump_dom(page, tmp_path / "profile")
    body = _body(dom)
    errors = re.search(r'<pre id="js-errors"[^>]*>(.*?)</pre>', dom, re.S)
    assert body["data-ready"] == "1", "the page's closing script never ran"
    assert body["data-js-errors"] == "0", errors.group(1) if errors else dom[-1000:]
    assert body["data-charts"] == body["data-charts-drawn"] == "6"
    points = dict(re.findall(r'<svg class="chart"[^>]*aria-label="([^"]+)"[^>]*data-points="(\d+)"', dom))
    # 7 rows, one per sitting (3 on A plus A's failed sitting of the third model, 3 on B of which one only
    # failed); depth sweeps at 0, 512, 1024. A failed sitting still has its fit estimate in the memory chart.
    # Every test is charted per model: 3 depths x 5 rows with figures.
    assert points == {"Prompt processing throughput per model": "15", "Generation throughput per model": "15",
                      "Memory per model": "17", "Speed against file size": "5",
                      "Prompt processing throughput against context depth": "15",
                      "Generation throughput against context depth": "15"}
    for text in ("AMD Ryzen 7 7840U", "Intel Core i9-13900K", "Qwen3-0.6B-Q8_0.gguf", "failed to load the model",
                 "<h2>Cost</h2>", "break-even per month"):
        assert text in dom


def test_the_report_is_self_contained(tmp_path: Path) -> None:
    html = render_html(fill_store(tmp_path / "s.sqlite3"))
    assert not re.search(r"""\b(?:src|href)\s*=|url\(|@import""", html)
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) == {"http://www.w3.org/2000/svg"}  # a namespace name
    assert "prefers-color-scheme:dark" in html


def test_the_error_check_itself_catches_a_script_error(tmp_path: Path) -> None:
    runs = fill_store(tmp_path / "s.sqlite3")
    html = render_html(runs, comparison=compare_runs(runs, baseline=runs[0].id))
    broken = html.replace("</main>", "<script>undefinedFunction();</script></main>")
    page = tmp_path / "broken.html"
    page.write_text(broken)
    dom = _dump_dom(page, tmp_path / "profile")
    assert _body(dom)["data-js-errors"] == "1"
    assert "undefinedFunction" in dom


def test_hostile_names_are_escaped_and_failed_only_selections_render(tmp_path: Path) -> None:
    from models.results.store import ResultsStore

    from .conftest import MACHINE_A, make_result

    hostile = {**MACHINE_A, "cpu": "<script>alert(1)</script>"}
    with ResultsStore(tmp_path / "s.sqlite3") as store:
        ids = [store.record_result(make_result(model="<img src=x onerror=alert(1)>.gguf"), machine=hostile),
               store.record_result(make_result(status="failed"), machine=MACHINE_A)]
        html = render_html(store.get_runs(ids))
        failed_only = render_html(store.get_runs(ids[1:]))
    assert "<img src=x" not in html and "<script>alert" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;.gguf" in html
    assert "the worker was stopped" in failed_only and 'data-point class="s0"' in failed_only  # fit estimate bar
