"""Reports: llama-bench-shaped exports, and importing them on another machine (bad files refused whole)."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from models.results.compare import compare_runs
from models.errors import ReportError
from models.bench.fields import LLAMA_BENCH_FIELDS
from models.results.report_rows import REPORT_FORMAT
from models.results.reports import export_report, import_report, read_report, render
from models.results.store import EnergyFigures, ResultsStore, RunRecord

from .conftest import MACHINE_A, MACHINE_B, make_result


@pytest.fixture
def runs_a(tmp_path: Path) -> list[RunRecord]:
    """Three runs on machine A: ok with energy, ok at a depth, and a failed one."""
    with ResultsStore(tmp_path / "a.sqlite3") as store:
        ids = [store.record_result(make_result(n_prompt=0, n_gen=128, ts=(50.0, 51.5, 49.25)), machine=MACHINE_A,
                                   model_identity={"repo": "HuggingFaceTB/SmolLM2-135M-Instruct"}, job="j1",
                                   energy=EnergyFigures(joules=30.0, seconds=7.5, source="rapl", is_estimate=False)),
               store.record_result(make_result(n_depth=512, ts=(900.0, 905.0)), machine=MACHINE_A, job="j1"),
               store.record_result(make_result(status="failed"), machine=MACHINE_A, job="j2")]
        return store.get_runs(ids)


def test_json_is_llama_benchs_array_with_our_fields_after(runs_a: list[RunRecord], tmp_path: Path) -> None:
    path = export_report(runs_a, tmp_path / "report.json")
    data = json.loads(path.read_text())
    assert isinstance(data, list) and len(data) == 3
    first = data[0]
    assert list(first)[:len(LLAMA_BENCH_FIELDS)] == list(LLAMA_BENCH_FIELDS)
    assert first["flash_attn"] == -1  # llama-bench's enum value for auto
    assert first["samples_ts"] == [50.0, 51.5, 49.25] and first["avg_ts"] == pytest.approx(50.25)
    assert first["n_gen"] == 128 and first["n_prompt"] == 0 and first["model_size"] == 98_362_432
    assert first["report_format"] == REPORT_FORMAT and first["machine"] == MACHINE_A
    assert first["energy_j"] == 30.0 and data[2]["status"] == "failed"


def test_jsonl_csv_sql_and_markdown(runs_a: list[RunRecord], tmp_path: Path) -> None:
    lines = render(runs_a, "jsonl").splitlines()
    assert len(lines) == 3 and json.loads(lines[1])["test"] == "pp512 @ d512"
    text = render(runs_a, "csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:len(LLAMA_BENCH_FIELDS)] == list(LLAMA_BENCH_FIELDS) and len(rows) == 4
    assert text.splitlines()[1].startswith('"') and all(len(r) == len(rows[0]) for r in rows)
    # Floats as llama-bench's csv writes them (C++ std::to_string), the same text as `bench -o csv`.
    assert rows[1][rows[0].index("avg_ts")] == "50.250000" and rows[1][rows[0].index("energy_j")] == "30.000000"
    db = sqlite3.connect(":memory:")
    db.executescript(render(runs_a, "sql"))
    got = db.execute("SELECT n_gen, avg_ts, flash_attn, machine_label FROM llama_bench ORDER BY run_id").fetchall()
    assert got[0] == (128, pytest.approx(50.25), -1, "AMD Ryzen 7 7840U")
    assert db.execute("SELECT count(*) FROM llama_bench WHERE status = 'failed'").fetchone()[0] == 1
    md = render(runs_a, "md")
    assert "| model | repo | size | params | backend | threads | ngl | test | t/s |" in md
    assert "| llama 135M Q4_1 | HuggingFaceTB/SmolLM2-135M-Instruct | 93.81 MiB |" in md
    assert "| tg128 | 50.25 ± " in md and "| pp512 @ d512 | 902.50 ± 3.54 |" in md
    assert "build: abc1234 (4000)" in md and "## AMD Ryzen 7 7840U" in md and "| failed |" in md


@pytest.mark.parametrize("suffix", ["json", "jsonl", "csv"])
def test_a_report_from_another_machine_joins_the_same_tables(runs_a: list[RunRecord], tmp_path: Path,
                                                            suffix: str) -> None:
    report = export_report(runs_a, tmp_path / f"from-a.{suffix}")
    with ResultsStore(tmp_path / "b.sqlite3") as store_b:
        local = store_b.record_result(make_result(n_prompt=0, n_gen=128, ts=(100.0, 101.0)), machine=MACHINE_B)
        assert import_report(report, store_b) == (3, 0)
        assert import_report(report, store_b) == (0, 3)  # importing twice adds nothing
        imported = store_b.list_runs(filters=None)
        assert len(imported) == 4
        by_uid = {r.uid: r for r in imported}
        for original in runs_a:
            copy = by_uid[original.uid]
            expected = original.result
            if suffix == "csv":  # csv carries llama-bench's six decimals; the samples (JSON) stay exact
                expected = replace(expected, avg_ts=round(expected.avg_ts, 6), stddev_ts=round(expected.stddev_ts, 6))
            assert copy.result == expected
            assert copy.machine == MACHINE_A and copy.machine_key == original.machine_key
            assert copy.energy == original.energy and copy.model == original.model
            assert copy.imported_from == f"from-a.{suffix}" and copy.id != 0
        comparison = compare_runs(imported, baseline=local)
        assert {r.machine_label for r in comparison.rows} == {"AMD Ryzen 7 7840U",
                                                                 "Intel Core i9-13900K + NVIDIA GeForce RTX 4090"}
        a_row = next(r for r in comparison.rows if r.imported and "tg128" in r.cells)
        assert a_row.diffs["tg128"] == pytest.approx((50.25 - 100.5) / 100.5 * 100)


def _bad_reports(runs_a: list[RunRecord], tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = json.loads(render(runs_a, "json"))
    newer = [dict(r, report_format=REPORT_FORMAT + 1) for r in good]
    zero = [dict(good[0], samples_ns=[], samples_ts=[])]
    csv_text = render(runs_a, "csv")
    header, *body = list(csv.reader(io.StringIO(csv_text)))
    keep = [i for i, name in enumerate(header) if name not in ("samples_ns", "machine")]
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL).writerows([[row[i] for i in keep] for row in [header, *body]])
    files = {
        "newer": ("newer.json", json.dumps(newer), "newer Tokenometer"),
        "truncated-json": ("cut.json", render(runs_a, "json")[:900], "not complete JSON"),
        "truncated-jsonl": ("cut.jsonl", render(runs_a, "jsonl")[:-40], "line 3 is not complete JSON"),
        "csv-missing-columns": ("cols.csv", out.getvalue(), "lacks the column(s) machine, samples_ns"),
        "truncated-csv": ("cut.csv", csv_text[: len(csv_text) - 300], "line 4 has a different number of cells"),
        "zero-samples": ("zero.json", json.dumps(zero), "zero samples"),
        "llama-bench-output": ("lb.json", json.dumps([{k: v for k, v in good[0].items() if k in LLAMA_BENCH_FIELDS}]),
                               "not a complete Tokenometer report"),
    }
    paths = {}
    for key, (name, text, message) in files.items():
        (tmp_path / name).write_text(text)
        paths[key] = (tmp_path / name, message)
    return paths


@pytest.mark.parametrize("case", ["newer", "truncated-json", "truncated-jsonl", "csv-missing-columns",
                                  "truncated-csv", "zero-samples", "llama-bench-output"])
def test_a_bad_report_is_a_clear_error_and_imports_nothing(runs_a: list[RunRecord], tmp_path: Path,
                                                          case: str) -> None:
    path, message = _bad_reports(runs_a, tmp_path)[case]
    with ResultsStore(tmp_path / "b.sqlite3") as store_b:
        mine = store_b.record_result(make_result(), machine=MACHINE_B)
        with pytest.raises(ReportError) as caught:
            import_report(path, store_b)
        assert message in str(caught.value)
        assert [r.id for r in store_b.list_runs()] == [mine]


def test_a_failed_export_leaves_an_existing_file_alone(runs_a: list[RunRecord], tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("yesterday's report")
    with pytest.raises(ReportError, match="No runs selected"):
        export_report([], target)
    with pytest.raises(ReportError, match="Cannot tell the report format"):
        export_report(runs_a, tmp_path / "report.xlsx")
    assert target.read_text() == "yesterday's report"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert len(read_report(export_report(runs_a, target))) == 3
