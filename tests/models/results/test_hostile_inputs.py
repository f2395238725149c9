"""Checks at the door: NaN, Infinity and absurd numbers, hostile nesting, FIFOs, null run ids and huge id
ranges are each refused (or handled) with words a user reads, and nothing half-imported is left behind."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from models.errors import ReportError, StoreError
from models.paths import results_db_path, settings_path
from models.results.reports import export_report, import_report, read_report
from models.results.store import ResultsStore, RunRecord
from models.settings import Settings, load_settings

from .conftest import MACHINE_A, MACHINE_B, make_result
from .sample_runs import fill_store

REPO_ROOT = Path(__file__).resolve().parents[3]


def _report_rows(tmp_path: Path, machine: dict[str, Any] = MACHINE_A, count: int = 2) -> list[dict[str, Any]]:
    """Real exported rows (jsonl) of `count` runs, to be made hostile one field at a time."""
    with ResultsStore(tmp_path / f"source-{machine['machine_id'][:4]}.sqlite3") as store:
        ids = [store.record_result(make_result(n_prompt=16 * (n + 1)), machine=machine) for n in range(count)]
        runs = store.get_runs(ids)
    path = export_report(runs, tmp_path / "clean.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def _within(seconds: float, call: Callable[[], Any]) -> Any:
    """Run `call` in a thread and fail (instead of hanging the suite) if it blocks, as a FIFO open would."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as error:  # handed back to the test
            box["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


@pytest.mark.parametrize(("field", "raw", "words"), [
    ("avg_ts", "NaN", "NaN, which is not a number"),
    ("avg_ts", "Infinity", "Infinity, which is not a number"),
    ("stddev_ts", "-Infinity", "-Infinity, which is not a number"),
    ("avg_ts", "1e999", "avg_ts is inf"),  # parsed as a float overflow, not as a constant
    ("n_prompt", "1e30", "n_prompt is 1e+30, outside 0 to 4,294,967,296"),
    ("n_prompt", "1000000000000000000000000000000", "n_prompt is 1e+30, outside"),
    ("n_gen", "-5", "n_gen is -5, outside 0"),
    ("model_size", "1e25", "model_size is 1e+25, outside"),
    ("samples_ts", "[1000.0, NaN, 990.0]", "NaN, which is not a number"),
    ("samples_ns", "[1, 2, 100000000000000000000000]", "samples_ns is 1e+23, outside"),
    ("energy_j", "1e308", "energy_j is 1e+308, outside"),
])
def test_nan_infinity_and_absurd_numbers_are_refused_whole(tmp_path: Path, field: str, raw: str, words: str) -> None:
    rows = _report_rows(tmp_path)
    rows[1]["energy_j"], rows[1]["energy_seconds"] = 3.0, 1.0
    lines = [json.dumps(row) for row in rows]
    lines[1] = lines[1].replace(f'"{field}": {json.dumps(rows[1][field])}', f'"{field}": {raw}', 1)
    assert raw in lines[1]
    path = tmp_path / "hostile.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with ResultsStore(results_db_path()) as store:
        with pytest.raises(ReportError, match="nothing was imported") as caught:
            import_report(path, store)
        assert words in str(caught.value) and "hostile.jsonl, line 2" in str(caught.value)
        assert store.list_runs() == []  # the good first line was not imported either


@pytest.mark.parametrize(("field", "cell", "words"), [
    ("avg_ts", "nan", "avg_ts is nan, not a number"),
    ("n_prompt", "1e30", "n_prompt is 1e+30"),
    ("n_gen", "inf", "malformed value"),  # int("inf") overflows: a clear refusal, not a traceback
])
def test_a_csv_report_with_absurd_cells_is_refused(tmp_path: Path, field: str, cell: str, words: str) -> None:
    import csv
    import io

    with ResultsStore(tmp_path / "a.sqlite3") as store:
        runs = store.get_runs([store.record_result(make_result(), machine=MACHINE_A)])
    text = export_report(runs, tmp_path / "clean.csv").read_text()
    table = list(csv.reader(io.StringIO(text)))
    table[1][table[0].index(field)] = cell
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(table)
    path = tmp_path / "absurd.csv"
    path.write_text(out.getvalue())
    with pytest.raises(ReportError, match=re.escape(words)):
        read_report(path)


def test_deeply_nested_json_is_refused_not_a_recursion_error(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ReportError, match="nested too deeply"):
        read_report(deep)
    line = tmp_path / "deep.jsonl"
    line.write_text('{"a": ' * 100_000 + "1" + "}" * 100_000 + "\n")
    with pytest.raises(ReportError, match="deep.jsonl, line 1: the JSON is nested too deeply"):
        read_report(line)
    # Nesting that parses (well under Python's recursion limit) is still no machine description.
    rows = _report_rows(tmp_path, count=1)
    nested: Any = "leaf"
    for _ in range(50):
        nested = {"x": nested}
    rows[0]["machine"] = {**MACHINE_A, "extra": nested}
    hostile = tmp_path / "nested-machine.jsonl"
    hostile.write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(ReportError, match="the machine is nested more than 8 levels deep"):
        read_report(hostile)


def test_a_hostile_settings_file_gives_the_defaults_and_a_warning() -> None:
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"currency": ' + "[" * 100_000 + "]" * 100_000 + "}")
    settings = load_settings()
    assert settings == Settings() and "nested too deeply" in settings.warnings[0]
    assert path.with_name("settings.json.bak").exists()
    path.write_text('{"electricity_price_per_kwh": NaN, "hardware_cost": 1e999, "currency": "USD"}')
    settings = load_settings()
    assert settings.electricity_price_per_kwh == Settings().electricity_price_per_kwh
    assert "NaN, which is not a number" in settings.warnings[0]
    path.write_text('{"hardware_cost": 1e999, "currency": "USD"}')
    settings = load_settings()
    assert settings.currency == "USD" and settings.hardware_cost == Settings().hardware_cost
    assert "hardware_cost must be a finite number" in settings.warnings[0]


def test_a_fifo_in_place_of_the_store_a_report_or_the_settings_is_refused_at_once(tmp_path: Path) -> None:
    store_fifo = tmp_path / "results.sqlite3"
    os.mkfifo(store_fifo)
    with pytest.raises(StoreError, match="is a FIFO"):
        _within(10, lambda: ResultsStore(store_fifo))
    report_fifo = tmp_path / "report.jsonl"
    os.mkfifo(report_fifo)
    with pytest.raises(ReportError, match="it is a FIFO"):
        _within(10, lambda: read_report(report_fifo))
    settings = settings_path()
    settings.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(settings)
    loaded = _within(10, load_settings)
    assert loaded == Settings() and "not a regular file" in loaded.warnings[0]
    folder = tmp_path / "folder.sqlite3"
    folder.mkdir()
    with pytest.raises(StoreError, match="is a folder"):
        ResultsStore(folder)


@pytest.mark.parametrize("empty", [None, "", "None", "  "])
def test_runs_without_a_run_id_get_one_and_never_block_later_imports(tmp_path: Path, empty: Any) -> None:
    first = _report_rows(tmp_path, MACHINE_A)
    second = _report_rows(tmp_path, MACHINE_B)
    for row in first + second:
        row["run_uid"] = empty
    paths = []
    for name, rows in (("a.jsonl", first), ("b.jsonl", second)):
        paths.append(tmp_path / name)
        paths[-1].write_text("".join(json.dumps(row) + "\n" for row in rows))
    with ResultsStore(results_db_path()) as store:
        assert import_report(paths[0], store) == (2, 0)
        assert import_report(paths[1], store) == (2, 0)  # another machine's runs are not "already present"
        assert import_report(paths[1], store) == (0, 2)  # the same report again adds nothing
        uids = [rec.uid for rec in store.list_runs()]
        assert len(set(uids)) == 4 and all(uid.startswith("imported-") for uid in uids)


def test_the_store_refuses_to_merge_on_an_empty_key(store: ResultsStore, tmp_path: Path) -> None:
    rec = store.get_runs([store.record_result(make_result(), machine=MACHINE_A)])[0]
    for uid in ("", "None", "null", " x "):
        with pytest.raises(StoreError, match="no usable run id"):
            store.import_runs([RunRecord(**{**rec.__dict__, "uid": uid})], source="x.jsonl")
    rows = _report_rows(tmp_path, count=1)
    rows[0]["run_uid"] = {"not": "text"}
    path = tmp_path / "odd.jsonl"
    path.write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(ReportError, match="run_uid .* is not text"):
        read_report(path)


def test_a_huge_run_range_is_resolved_against_the_stored_ids_in_bounded_memory(tmp_path: Path) -> None:
    fill_store(results_db_path())
    target = tmp_path / "all.json"
    # 1 GiB of address space: expanding the range (a list of a billion ints) would need tens of GiB.
    limit = 1 << 30

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    done = subprocess.run([sys.executable, "-m", "models.cli", "report", "1-999999999", "5", "-o", str(target)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, preexec_fn=cap,
                          env={**os.environ})
    assert done.returncode == 0, done.stderr
    assert "Wrote 32 runs" in done.stdout and len(json.loads(target.read_text())) == 32
    done = subprocess.run([sys.executable, "-m", "models.cli", "compare", "900-999999999999999999999999"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, preexec_fn=cap)
    assert done.returncode == 1 and "No runs with ids in 900-" in done.stderr and "Traceback" not in done.stderr


def test_tens_of_thousands_of_ids_are_one_query(store: ResultsStore) -> None:
    run = store.record_result(make_result(), machine=MACHINE_A)
    # More ids than SQLite allows variables by default (32,766; some builds allow more): one JSON parameter.
    assert [r.id for r in store.get_runs(list(range(1, 40_001)), missing_ok=True)] == [run]
