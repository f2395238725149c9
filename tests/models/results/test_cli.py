"""The results commands: runs, compare, report, import, through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.cli import main
from models.paths import results_db_path
from models.results.reports import export_report
from models.results.store import ResultsStore

from .conftest import MACHINE_B, make_result
from .sample_runs import fill_store


def test_runs_lists_newest_first_and_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs"]) == 0
    assert "No runs stored yet" in capsys.readouterr().out
    runs = fill_store(results_db_path())
    assert main(["runs", "--limit", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["id", "time", "model"] and len(lines) == 4
    assert main(["runs", "--json", "--status", "failed"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [row["run_id"] for row in data] == [r.id for r in reversed(runs) if r.status == "failed"]
    assert data[0]["report_format"] == 1 and "samples_ts" in data[0]


def test_compare_with_a_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    runs = fill_store(results_db_path())
    assert main(["compare", "1-4", "14", "--baseline", "15"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| model | machine | settings |") and "(baseline)" in out and "%" in out
    assert main(["compare", "1,2", "--cost"]) == 0
    out = capsys.readouterr().out
    assert "Cost per 1M generated tokens (0.3 EUR/kWh" in out and "break-even at" in out
    assert main(["compare", "1,2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["key"] for c in data["columns"]][:2] == ["pp512", "tg128"] and len(data["rows"]) == 1
    assert runs[0].id == 1


@pytest.mark.parametrize("suffix", ["md", "csv", "json", "jsonl", "sql", "html"])
def test_report_writes_each_format(tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]) -> None:
    fill_store(results_db_path())
    target = tmp_path / f"out.{suffix}"
    assert main(["report", "all", "-o", str(target)]) == 0
    assert f"Wrote 32 runs to {target}" in capsys.readouterr().out
    text = target.read_text()
    assert {"md": "| model | repo | size |", "csv": "build_commit,build_number,", "json": '"samples_ns"',
            "jsonl": '"run_uid"',
            "sql": "CREATE TABLE IF NOT EXISTS llama_bench", "html": "<svg class=\"chart\""}[suffix] in text


def test_import_another_machines_report_and_errors_exit_1(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    other = fill_store(tmp_path / "other.sqlite3")
    report = export_report(other[:4], tmp_path / "from-other.jsonl")
    with ResultsStore(results_db_path()) as store:
        store.record_result(make_result(), machine=MACHINE_B)
    assert main(["import", str(report)]) == 0
    assert "Imported 4 runs from from-other.jsonl; machine: AMD Ryzen 7 7840U." in capsys.readouterr().out
    assert main(["runs", "--imported"]) == 0
    assert capsys.readouterr().out.count("(imported from from-other.jsonl)") == 4
    broken = tmp_path / "broken.json"
    broken.write_text('[{"report_format": 1, "run_uid": "x"')
    assert main(["import", str(broken)]) == 1
    assert "not complete JSON" in capsys.readouterr().err
    assert main(["report", "99", "-o", str(tmp_path / "x.md")]) == 1
    assert "No run with id 99" in capsys.readouterr().err
    assert main(["compare", "abc"]) == 1
    assert "not a run id" in capsys.readouterr().err
