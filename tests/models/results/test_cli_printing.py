"""What the results commands print: no terminal escape codes from stored names, a settings column, unique cost
labels, the last benchmark by default, the baseline in reports, counts in words that agree with them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from models.cli import main
from models.paths import results_db_path
from models.results.reports import export_report
from models.results.store import EnergyFigures, ResultsStore

from .conftest import MACHINE_A, MACHINE_B, make_result

ESC = "\x1b]0;owned\x07\x1b[2J\x1b[31m"  # set the window title, clear the screen, turn the text red


def _no_escapes(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text, text
    assert "\\x1b" in text  # shown, not dropped: the user sees that the name holds an escape code


def test_runs_and_import_print_escape_codes_as_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hostile_machine = {**MACHINE_A, "cpu": f"CPU{ESC}"}
    with ResultsStore(tmp_path / "other.sqlite3") as other:
        ids = [other.record_result(make_result(model=f"evil{ESC}.gguf", n_threads=t), machine=hostile_machine)
               for t in (1, 2)]
        report = export_report(other.get_runs(ids), tmp_path / f"from{ESC}.jsonl")
    assert main(["import", str(report)]) == 0
    out = capsys.readouterr().out
    _no_escapes(out)
    assert out.startswith("Imported 2 runs from from\\x1b]0;owned\\x07")
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    _no_escapes(out)
    lines = out.splitlines()
    assert "settings" in lines[0].split() and len(lines) == 3
    assert "threads 1 · ngl 99 · batch 2048/512 · fa auto · kv f16" in lines[2]  # the newest first
    assert "threads 2 · ngl 99" in lines[1]
    assert main(["compare", "all"]) == 0
    _no_escapes(capsys.readouterr().out)


def test_an_error_message_quoting_a_name_prints_no_escape_codes(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / f"bad{ESC}.json"
    bad.write_text("[")
    assert main(["import", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "\x1b" not in err and "bad\\x1b" in err


def test_compare_and_report_default_to_the_last_benchmark(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare"]) == 1
    assert "No runs stored yet" in capsys.readouterr().err
    with ResultsStore(results_db_path()) as store:
        store.record_result(make_result(), machine=MACHINE_A, job="first")
        last = [store.record_result(make_result(n_prompt=0, n_gen=128), machine=MACHINE_A, job="second"),
                store.record_result(make_result(), machine=MACHINE_A, job="second")]
    assert main(["compare", "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert [row["run_ids"] for row in data["rows"]] == [last]
    assert f"The last benchmark: 2 runs ({last[0]}-{last[1]})." in captured.err
    target = tmp_path / "last.json"
    assert main(["report", "-o", str(target)]) == 0
    assert "Wrote 2 runs to" in capsys.readouterr().out
    assert sorted(row["run_id"] for row in json.loads(target.read_text())) == last


def test_report_exports_the_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with ResultsStore(results_db_path()) as store:
        ids = [store.record_result(make_result(n_threads=t), machine=MACHINE_A, job=f"j{t}") for t in (2, 4)]
    target = tmp_path / "r.json"
    assert main(["report", str(ids[1]), "--baseline", str(ids[0]), "-o", str(target)]) == 0
    assert "Wrote 2 runs" in capsys.readouterr().out
    rows = {row["run_id"]: row["is_baseline"] for row in json.loads(target.read_text())}
    assert rows == {ids[0]: True, ids[1]: False}
    md = tmp_path / "r.md"
    assert main(["report", "all", "--baseline", str(ids[0]), "-o", str(md)]) == 0
    assert "(baseline)" in md.read_text() and "%" in md.read_text()
    assert main(["report", "all", "--baseline", "99", "-o", str(md)]) == 1
    assert "No run with id 99" in capsys.readouterr().err


def test_cost_rows_have_unique_labels(capsys: pytest.CaptureFixture[str]) -> None:
    """Same model on one machine with two thread counts, and on a second machine: three distinct names."""
    energy = EnergyFigures(joules=20.0, seconds=2.0, source="rapl", is_estimate=False)
    with ResultsStore(results_db_path()) as store:
        for machine, threads in ((MACHINE_A, 2), (MACHINE_A, 4), (MACHINE_B, 4)):
            store.record_result(make_result(n_prompt=0, n_gen=128, n_threads=threads), machine=machine,
                                job=f"{machine['machine_id'][:1]}{threads}", energy=energy)
    assert main(["compare", "all", "--cost"]) == 0
    out = capsys.readouterr().out
    names = [line.split(": ", 1)[0].strip() for line in out.split("Cost per 1M generated tokens")[1].splitlines()[1:]
             if line.startswith("  ")]
    assert len(names) == 3 and len(set(names)) == 3, names
    assert any("threads 2" in n for n in names) and any("Intel" in n for n in names)


def test_counts_agree_with_their_words(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with ResultsStore(results_db_path()) as store:
        only = store.record_result(make_result(), machine=MACHINE_A)
    assert main(["report", str(only), "-o", str(tmp_path / "one.csv")]) == 0
    out = capsys.readouterr().out
    assert "Wrote 1 run to" in out and not re.search(r"\b1 runs\b", out)


def test_a_hub_download_records_its_repo(store: ResultsStore) -> None:
    """The repo of a model in huggingface_hub's cache comes from its path (it showed "–" in reports)."""
    cache = "/home/u/.cache/huggingface/hub/models--bartowski--Qwen3-0.6B-GGUF/snapshots/0123abcd/Qwen3-0.6B-Q8_0.gguf"
    ids = [store.record_result(make_result(model_path=cache, model="Qwen3-0.6B-Q8_0.gguf"), machine=MACHINE_A),
           store.record_result(make_result(model_path="/models/mine.gguf", model="mine.gguf"), machine=MACHINE_A)]
    first, second = store.get_runs(ids)
    assert first.model["repo"] == "bartowski/Qwen3-0.6B-GGUF" and first.model["quant"] == "Q8_0"
    assert second.model["repo"] == ""
