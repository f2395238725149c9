"""Load tests and batched sweeps in the reports (md, json, jsonl, csv beside, html capacity section, an import that
takes the runs only) and in `compare --cost` (the cost at N people where a load test of the file exists)."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from models.cli import main
from models.paths import results_db_path
from models.results.measurement_report import report_measurements
from models.results.measurements import delete_measurements, list_measurements
from models.results.store import ResultsStore
from models.settings import load_settings, save_settings
from tests.models.results.conftest import MACHINE_A, make_result


def _measure(starter_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A real benchmark, load test and batched sweep of the starter model, each kept in the store."""
    save_settings(replace(load_settings(), system_power_watts=50.0))  # no sensor here: the cost uses these watts
    assert main(["bench", str(starter_model), "-p", "16", "-n", "8", "-r", "1", "-t", "2"]) == 0
    assert main(["load", str(starter_model), "--profile", "tiny", "--concurrency", "1,2", "--requests", "2", "-t",
                 "2", "--slo-ttft", "120s", "--slo-tpot", "30s"]) == 0
    assert main(["batched", str(starter_model), "-npp", "16", "-ntg", "4", "-npl", "1,2", "-t", "2"]) == 0
    capsys.readouterr()


def test_reports_carry_load_tests_and_sweeps_and_compare_prices_the_load(
        starter_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _measure(starter_model, capsys)
    with ResultsStore(results_db_path()) as store:
        (load,) = list_measurements(store, kind="load")
        assert len(store.list_runs()) == 2
    assert "serves 2 people" in load.answer

    # compare --cost: the same file was load tested here, so its cost is at that load, labelled.
    assert main(["compare", "all", "--cost"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\[at 2 people, load test of \d{4}-\d\d-\d\d \d\d:\d\d\]", out), out
    assert "per 1M output tokens (energy estimated" in out and "assumes one user" not in out

    # Every run exported: every measurement goes with them.
    md, js, jl, cs, html = (tmp_path / f"r.{s}" for s in ("md", "json", "jsonl", "csv", "html"))
    for path in (md, js, jl, cs, html):
        assert main(["report", "all", "-o", str(path)]) == 0
        assert "and 2 load tests or sweeps" in capsys.readouterr().out
    text = md.read_text()
    assert "## Capacity" in text and load.answer in text and "Cost at that load:" in text
    assert "| PP | TG | B | N_KV |" in text
    data = json.loads(js.read_text())
    runs = [item for item in data if "run_uid" in item]
    measured = {item["measurement"]: item for item in data if "measurement" in item}
    assert len(runs) == 2 and set(measured) == {"load", "batched"}
    assert [level["concurrency"] for level in measured["load"]["levels"]] == [1, 2]
    assert measured["load"]["model_filename"] == starter_model.name
    assert [row["pl"] for row in measured["batched"]["rows"]] == [1, 2]
    lines = [json.loads(line) for line in jl.read_text().splitlines()]
    assert sum("measurement" in line for line in lines) == 2 and sum("run_uid" in line for line in lines) == 2
    beside = tmp_path / "r.measurements.csv"
    rows = list(csv.DictReader(beside.open(newline="")))
    assert [(row["kind"], row["concurrency"] or row["pl"]) for row in rows] == [
        ("batched", "1"), ("batched", "2"), ("load", "1"), ("load", "2")] or [
        (row["kind"], row["concurrency"] or row["pl"]) for row in rows] == [
        ("load", "1"), ("load", "2"), ("batched", "1"), ("batched", "2")]
    assert all(float(row["output_throughput"]) > 0 for row in rows if row["kind"] == "load")
    assert "measurement" not in cs.read_text().splitlines()[0]  # the runs' csv stays llama-bench's
    page = html.read_text()
    assert "<h2>Capacity</h2>" in page and "TTFT p90 with the SLO" in page and "SLO 120 s" in page
    assert "per 1M output tokens" in page and "per person t/s" in page and "total t/s" in page

    # An import of the json or jsonl takes the runs and passes over the measurements.
    for path in (js, jl):
        assert main(["import", str(path)]) == 0
        assert "2 already present" in capsys.readouterr().out

    # A report of another model's runs carries none of these, unless it is a report of every run.
    with ResultsStore(results_db_path()) as store:
        other = store.record_result(make_result(model="other-model.Q8_0.gguf", n_gen=16), machine=MACHINE_A)
        mine = [run for run in store.list_runs() if run.id != other]
        assert {m.kind for m in report_measurements(store, mine, everything=False)} == {"load", "batched"}
        assert report_measurements(store, store.get_runs([other]), everything=False) == []
        assert len(report_measurements(store, store.get_runs([other]), everything=True)) == 2
        # Without a load test of the file, the cost is one stream's and says so.
        delete_measurements(store, [load.id])
    assert main(["compare", "all", "--cost"]) == 0
    assert "assumes one user" in capsys.readouterr().out

