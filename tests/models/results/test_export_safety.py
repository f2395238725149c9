"""Exports that cannot run code: hostile names in every field of a run go out as data in sql, csv, md and html."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from models.bench.fields import LLAMA_BENCH_FIELDS, RESULT_FIELDS, Kind, csv_cell, sql_string
from models.bench.output import format_results
from models.results.report_html import render_html
from models.results.report_rows import REPORT_FIELDS
from models.results.reports import export_report, read_report, render
from models.results.store import EnergyFigures, ResultsStore, RunRecord
from models.settings import Settings
from models.text import is_control

from .conftest import MACHINE_A, make_result

SCRIPT = "<script>document.body.setAttribute('data-pwned','script')</script>"
IMAGE = "<img src=x onerror=\"document.body.setAttribute('data-pwned','img')\">"


def hostile(marker: Path) -> str:
    """A spreadsheet formula, HTML that runs script, terminal escape codes, and a sqlite3-shell breakout: a NUL
    (the shell's line reader stops there, so the closing quote is lost) then `.shell` alone on a new line."""
    return (f"=HYPERLINK(\"http://x\") {SCRIPT}{IMAGE} \x1b]0;pwned\x07\x1b[2J\u202e |pipe| 'q' "
            f"\x00');\n.shell touch {marker}\n.system touch {marker}\r\n-- \x7f\x9b")


def hostile_runs(tmp_path: Path, value: str) -> list[RunRecord]:
    """Runs with the value in every text field of the result, the model, the machine, the energy and the origin
    (imported under that name, as a hostile report from another machine would arrive)."""
    text_fields = {f.name: value for f in RESULT_FIELDS if f.kind is Kind.STRING and f.name not in ("status",)}
    result = make_result(n_prompt=0, n_gen=128, **{**text_fields, "buffers": {value: 1}, "fit_estimate": {value: 2}})
    failed = make_result(status="failed", **{**text_fields, "error": value})
    machine = {**MACHINE_A, "cpu": value, "os": value, "gpus": [{"name": value}], "gpu_driver": value,
               "llama_cpp_commit": value, "backends": [value]}
    with ResultsStore(tmp_path / "a.sqlite3") as store:
        ids = [store.record_result(r, machine=machine, job=value,
                                   model_identity={"repo": value, "quant": value, "sha256": value},
                                   energy=EnergyFigures(joules=3.0, seconds=1.0, source=value, is_estimate=True))
               for r in (result, failed)]
        runs = store.get_runs(ids)
    with ResultsStore(tmp_path / "b.sqlite3") as other:
        other.import_runs(runs, source=value)
        return other.list_runs()


def test_sql_export_only_inserts_when_loaded_with_the_sqlite3_shell(tmp_path: Path) -> None:
    shell = shutil.which("sqlite3")
    assert shell, "the sqlite3 shell is needed (Debian/Ubuntu: apt-get install -y sqlite3); CI installs it"
    marker = tmp_path / "pwned"
    value = hostile(marker)
    runs = hostile_runs(tmp_path, value)
    sql = render(runs, "sql")
    assert not any(is_control(ch) for ch in sql.replace("\n", "")), "a raw control character in the SQL"
    assert all(line == "" or line.startswith(("--", "CREATE", "  ", ")", "INSERT")) for line in sql.splitlines())
    bench_sql = format_results([r.result for r in runs], "sql")
    for name, text in (("report", sql), ("bench", bench_sql)):
        script = tmp_path / f"{name}.sql"
        script.write_text(text, encoding="utf-8")
        db = tmp_path / f"{name}.sqlite3"
        with script.open("rb") as stdin:
            proc = subprocess.run([shell, "-bail", str(db)], stdin=stdin, capture_output=True, timeout=60,
                                  cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        assert not marker.exists(), f"the {name} export ran a shell command"
        rows = sqlite3.connect(db).execute("SELECT model_type, test, backends FROM llama_bench").fetchall()
        assert rows == [(value, value, value)] * 2  # every value inserted whole, NUL and all
    got = sqlite3.connect(tmp_path / "report.sqlite3").execute(
        "SELECT model_repo, machine_label, imported_from, machine, samples_ts FROM llama_bench").fetchone()
    assert got[:3] == (value, f"{value} + {value}", value) and json.loads(got[3])["cpu"] == value  # label: cpu + gpu
    assert json.loads(got[4]) == runs[0].result.samples_ts


def test_sql_string_is_printable_and_exact() -> None:
    db = sqlite3.connect(":memory:")
    for text in ("", "plain", "it's", "\x00", "a\nb", "\x1b[2J'x'\x00", "é\u202e\U0001F600"):
        literal = sql_string(text)
        assert not any(is_control(ch) for ch in literal), literal
        assert db.execute(f"SELECT {literal}").fetchone()[0] == text


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_neutralises_formulas_and_keeps_numbers(tmp_path: Path, start: str) -> None:
    formula = f"{start}cmd|' /C calc'!A0"
    runs = hostile_runs(tmp_path, formula)
    for text in (render(runs, "csv"), format_results([r.result for r in runs], "csv")):
        rows = list(csv.reader(io.StringIO(text)))
        header, first = rows[0], rows[1]
        assert header[:len(LLAMA_BENCH_FIELDS)] == list(LLAMA_BENCH_FIELDS)
        assert first[header.index("model_type")] == "'" + formula
        assert first[header.index("flash_attn")] == "-1"  # a number stays a number
        assert not any(cell.startswith(("=", "+", "@", "\t", "\r")) for row in rows[1:] for cell in row)
        assert not any(cell.startswith("-") and not cell.lstrip("-").replace(".", "").isdigit()
                       for row in rows[1:] for cell in row)
    # Importing the report gives back the values as they were, without the quote.
    path = export_report(runs, tmp_path / "hostile.csv")
    back = read_report(path)
    assert [r.result.model_type for r in back] == [formula, formula]
    assert back[0].model["repo"] == formula and back[0].energy == runs[0].energy


def test_every_csv_text_cell_is_checked() -> None:
    strings = [f for f in REPORT_FIELDS if f.kind is Kind.STRING]
    assert {"model_filename", "model_repo", "machine_label", "imported_from", "error"} <= {f.name for f in strings}
    for field in strings:
        assert csv_cell(field, "=1+1") == "'=1+1" and csv_cell(field, "-1") == "-1"


def test_markdown_escapes_html(tmp_path: Path) -> None:
    value = hostile(tmp_path / "pwned")
    runs = hostile_runs(tmp_path, value)
    md = render(runs, "md")
    assert "<script" not in md and "<img" not in md and "&lt;script&gt;" in md
    assert not any(is_control(ch) for ch in md.replace("\n", ""))
    table = [line for line in md.splitlines() if line.startswith("| ") and "llama" not in line]
    assert all(line.count(" | ") == table[0].count(" | ") for line in table[:3])  # pipes cannot add cells
    bench_md = format_results([r.result for r in runs], "md")
    assert not any(is_control(ch) for ch in bench_md.replace("\n", ""))


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def test_html_escapes_every_value_settings_included(tmp_path: Path) -> None:
    value = hostile(tmp_path / "pwned")
    runs = hostile_runs(tmp_path, value)
    settings = Settings(currency=value, system_power_watts=60.0)
    html = render_html(runs, settings=settings)
    parser = _Tags()
    parser.feed(html)
    tags = [tag for tag, _ in parser.tags]
    assert tags.count("script") == 2 and "img" not in tags  # only the page's own two scripts
    assert not any(name.startswith("on") for _, attrs in parser.tags for name, _ in attrs)
    assert html.count("&lt;script&gt;") >= 10  # the names are there, as text
    cost = html.split("<h2>Cost</h2>")[1].split("<h2>")[0]
    assert "break-even" in cost and cost.count("&lt;script&gt;") >= 5 and "<script" not in cost  # the currency
