"""Output formats: llama-bench's field names and order, readable by csv/json/sqlite, md table like llama-bench's."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from models.bench.fields import LLAMA_BENCH_FIELDS, RESULT_FIELD_NAMES as ALL_FIELDS
from models.bench.output import format_results
from models.bench.spec import BenchResult


def _result(test: str = "pp512", n_prompt: int = 512, n_gen: int = 0, **kw: object) -> BenchResult:
    base: dict[str, object] = dict(
        build_commit="0c1e570", build_number=1, cpu_info="Test CPU", backends="CPU",
        model_filename="/m/SmolLM2.gguf", model_type="llama ?B Q4_1", model_size=90_000_000,
        model_n_params=134_515_008, n_batch=2048, n_ubatch=512, n_threads=2, n_prompt=n_prompt, n_gen=n_gen,
        test=test, test_time="2026-01-01T00:00:00Z", avg_ns=1_000_000, stddev_ns=10_000, avg_ts=512.5,
        stddev_ts=3.25, samples_ns=[990_000, 1_010_000], samples_ts=[517.2, 506.9],
        buffers={"CPU:KV": 1024}, system_info="CPU : AVX2 = 1 |")
    base.update(kw)
    return BenchResult(**base)  # type: ignore[arg-type]


RESULTS = [_result(), _result("tg128", 0, 128, avg_ts=88.0),
           _result("pp512", status="failed", error="llama.cpp could not load it", avg_ts=0.0, stddev_ts=0.0,
                   samples_ns=[], samples_ts=[])]


def test_llama_bench_fields_come_first_in_its_order() -> None:
    assert ALL_FIELDS[:len(LLAMA_BENCH_FIELDS)] == LLAMA_BENCH_FIELDS
    assert LLAMA_BENCH_FIELDS[:5] == ("build_commit", "build_number", "cpu_info", "gpu_info", "backends")
    assert LLAMA_BENCH_FIELDS[-4:] == ("avg_ns", "stddev_ns", "avg_ts", "stddev_ts")
    assert set(ALL_FIELDS) == set(BenchResult.field_names())


def test_csv_reads_back() -> None:
    text = format_results(RESULTS, "csv")
    assert text.splitlines()[0].startswith("build_commit,build_number,cpu_info,")
    assert all(cell.startswith('"') and cell.endswith('"') for cell in text.splitlines()[1].split(",")[:20])  # all quoted
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 3
    assert rows[0]["avg_ts"] == "512.500000" and rows[0]["flash_attn"] == "-1" and rows[0]["use_mmap"] == "1"
    assert json.loads(rows[0]["samples_ns"]) == [990_000, 1_010_000]
    assert rows[2]["status"] == "failed"


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_and_jsonl_read_back(fmt: str) -> None:
    text = format_results(RESULTS, fmt)
    rows = json.loads(text) if fmt == "json" else [json.loads(line) for line in text.splitlines()]
    assert [r["avg_ts"] for r in rows] == [512.5, 88.0, 0.0]
    assert rows[0]["samples_ts"] == [517.2, 506.9]
    assert rows[0]["flash_attn"] == -1 and rows[0]["use_mmap"] is True
    assert list(rows[0])[:len(LLAMA_BENCH_FIELDS)] == list(LLAMA_BENCH_FIELDS)
    assert rows[0]["buffers"] == {"CPU:KV": 1024}


def test_sql_loads_into_sqlite() -> None:
    results = RESULTS + [_result(model_type="it's quoted")]
    db = sqlite3.connect(":memory:")
    db.executescript(format_results(results, "sql"))
    rows = db.execute("SELECT model_type, n_prompt, avg_ts, status FROM llama_bench").fetchall()
    assert rows[0] == ("llama ?B Q4_1", 512, 512.5, "ok")
    assert rows[3][0] == "it's quoted"
    types = {row[1]: row[2] for row in db.execute("PRAGMA table_info(llama_bench)")}
    assert types["avg_ts"] == "REAL" and types["n_threads"] == "INTEGER" and types["model_type"] == "TEXT"


def test_markdown_table_like_llama_bench() -> None:
    text = format_results(RESULTS[:2], "md")
    lines = text.splitlines()
    assert lines[0].startswith("| model ") and "threads" in lines[0] and lines[0].rstrip().endswith("t/s |")
    assert "n_batch" not in lines[0]  # default and not varied: hidden, as llama-bench does
    assert lines[1].startswith("| -----") and lines[1].rstrip().endswith(": |")
    assert " 512.50 ± 3.25 |" in lines[2] and "85.83 MiB" in lines[2] and "134.52 M" in lines[2]
    assert "tg128" in lines[3]
    assert text.rstrip().endswith("build: 0c1e570 (1)")


def test_markdown_shows_varied_parameters_and_failures() -> None:
    text = format_results([RESULTS[0], _result(n_batch=256), RESULTS[2]], "md")
    header = text.splitlines()[0]
    assert "n_batch" in header
    assert "failed" in text.splitlines()[4]
    assert "pp512 (SmolLM2.gguf): failed: llama.cpp could not load it" in text


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="Unknown output format"):
        format_results(RESULTS, "xml")


def test_ttft_not_measured_is_an_empty_cell_not_zero() -> None:
    measured = _result(ttft_ms=41.5, ttft_samples_ms=[41.0, 42.0])
    text = format_results([RESULTS[0], measured], "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["ttft_ms"] == "" and rows[1]["ttft_ms"] == "41.500000"
    data = json.loads(format_results([RESULTS[0], measured], "json"))
    assert data[0]["ttft_ms"] is None and data[1]["ttft_ms"] == 41.5
    db = sqlite3.connect(":memory:")
    db.executescript(format_results([RESULTS[0]], "sql"))
    assert db.execute("SELECT ttft_ms FROM llama_bench").fetchone() == (None,)


def test_bench_output_and_reports_write_the_same_cells(tmp_path: Path) -> None:
    """One serializer: a result's fields read the same in `bench -o csv` and in a csv report of it."""
    from models.results.reports import render
    from models.results.store import ResultsStore

    with ResultsStore(tmp_path / "s.sqlite3") as store:
        runs = store.get_runs([store.record_result(r, machine={"machine_id": "m", "cpu": "Test CPU"})
                               for r in RESULTS])
    bench = list(csv.reader(io.StringIO(format_results(RESULTS, "csv"))))
    report = list(csv.reader(io.StringIO(render(runs, "csv"))))
    width = len(bench[0])
    assert report[0][:width] == bench[0] and [row[:width] for row in report[1:]] == bench[1:]
    assert bench[1][bench[0].index("avg_ts")] == "512.500000"  # C++ std::to_string, as llama-bench writes it
    bench_json = json.loads(format_results(RESULTS, "json"))
    report_json = json.loads(render(runs, "json"))
    assert [{k: r[k] for k in b} for b, r in zip(bench_json, report_json)] == bench_json
