"""Reports: export stored runs as md, csv, json, jsonl, sql or html (llama-bench's names), and import them back."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import fields
from html import escape
from pathlib import Path
from typing import Any

from models import __version__
from models.bench.fields import (FLASH_ATTN_NAME as _FLASH_ATTN_NAME, csv_header, csv_line, csv_text_back,
                                 json_object, params_text, size_text, speed_text, sql_create, sql_insert)
from models.bench.spec import BenchResult
from models.results.compare import compare_runs, format_comparison
from models.errors import ReportError
from models.files import atomic_write_text
from models.results.import_checks import check_values, parse_json, read_report_text, run_uid
from models.results.measurements import Measurement
from models.results.store import EnergyFigures, ResultsStore, RunRecord, fingerprint_sha, machine_label
from models.results.report_html import render_html
from models.results.report_rows import FORMATS, REPORT_FIELDS, REPORT_FORMAT, report_row
from models.settings import Settings
from models.text import printable

log = logging.getLogger(__name__)

_REPORT_FIELD_BY_NAME = {f.name: f for f in REPORT_FIELDS}
# What an import cannot do without; everything else falls back to its default.
REQUIRED_FIELDS = ("report_format", "run_uid", "machine", "model_filename", "n_prompt", "n_gen", "status",
                   "samples_ns", "samples_ts", "test_time")


def to_json(runs: Sequence[RunRecord], *, baseline: int | None = None) -> str:
    """llama-bench's json shape: an array of one object per test."""
    if not runs:
        return "[]\n"
    return "[\n" + ",\n".join(json_object(report_row(r, baseline=baseline), indent=2) for r in runs) + "\n]\n"


def to_jsonl(runs: Sequence[RunRecord], *, baseline: int | None = None) -> str:
    return "".join(json_object(report_row(r, baseline=baseline)) + "\n" for r in runs)


def to_csv(runs: Sequence[RunRecord], *, baseline: int | None = None) -> str:
    """llama-bench's csv: a header of field names, every value quoted, floats as llama-bench writes them."""
    return csv_header(REPORT_FIELDS) + "".join(csv_line(REPORT_FIELDS, report_row(rec, baseline=baseline))
                                               for rec in runs)


def to_sql(runs: Sequence[RunRecord], *, baseline: int | None = None) -> str:
    """llama-bench's sql: CREATE TABLE IF NOT EXISTS llama_bench, then one INSERT per test; every literal is
    printable, so the file is safe to load with the sqlite3 shell."""
    return (f"-- Tokenometer report, format {REPORT_FORMAT}\n" + sql_create(REPORT_FIELDS) + "\n"
            + "".join(sql_insert(REPORT_FIELDS, report_row(rec, baseline=baseline)) for rec in runs))


def _md(value: object) -> str:
    """A Markdown table cell from outside data: HTML escaped (a viewer renders raw HTML), pipes escaped,
    control characters shown."""
    return printable(escape(str(value), quote=False)).replace("|", "\\|")


def to_markdown(runs: Sequence[RunRecord], *, baseline: int | None = None) -> str:
    """llama-bench's table (model, size, params, backend, threads, ngl, test, t/s) per machine, then the comparison."""
    lines = ["# Tokenometer report", "", f"Report format {REPORT_FORMAT}, Tokenometer {__version__}.", ""]
    machines: dict[str, list[RunRecord]] = {}
    for rec in runs:
        machines.setdefault(rec.machine_key, []).append(rec)
    for group in machines.values():
        machine = group[0].machine
        lines += [f"## {_md(group[0].machine_label)}" + (" (imported)" if group[0].imported_from else ""), ""]
        facts = [("OS", machine.get("os")), ("CPU", machine.get("cpu")), ("cores", machine.get("cpu_cores")),
                 ("RAM", size_text(int(machine["ram_total"])) if machine.get("ram_total") else None),
                 ("GPU driver", machine.get("gpu_driver")), ("llama.cpp", machine.get("llama_cpp_commit")),
                 ("llama-cpp-python", machine.get("llama_cpp_python_version"))]
        lines += [f"- {k}: {_md(v)}" for k, v in facts if v] + [""]
        lines += ["| model | repo | size | params | backend | threads | ngl | test | t/s |",
                  "| :--- | :--- | ---: | ---: | :--- | ---: | ---: | ---: | ---: |"]
        for rec in group:
            r = rec.result
            model = r.model_type or rec.model.get("file", "")
            lines.append(f"| {_md(model)} | {_md(rec.model.get('repo') or '–')} | {size_text(r.model_size)} "
                         f"| {params_text(r.model_n_params)} | {_md(r.backends or 'CPU')} | {r.n_threads} "
                         f"| {r.n_gpu_layers} | {_md(r.test)} | {_md(speed_text(r))} |")
        builds = sorted({f"{rec.result.build_commit} ({rec.result.build_number})" for rec in group})
        lines += ["", f"build: {_md(', '.join(builds))}", ""]
    comparison = compare_runs(runs, baseline=baseline)
    # format_comparison writes names as they are; escape the HTML in them (it adds none of its own).
    lines += ["## Comparison", "", printable(escape(format_comparison(comparison), quote=False), newlines=True)]
    return "\n".join(lines)


def render(runs: Sequence[RunRecord], fmt: str, *, settings: Settings | None = None,
           baseline: int | None = None, measurements: Sequence[Measurement] = ()) -> str:
    """A report of these runs in one format (md, csv, json, jsonl, sql, html); the HTML report shows the
    cost per million tokens when given the settings; `baseline` (a run id) is the comparison's baseline,
    marked in every format. Load tests and batched sweeps (`measurements`) go in the md, json, jsonl and html
    reports here; a csv report's go in a file beside it (export_report), an sql report holds runs only."""
    if not runs:
        raise ReportError("No runs selected: a report needs at least one run.")
    if baseline is not None and baseline not in {r.id for r in runs}:
        raise ReportError(f"The baseline run {baseline} is not among the runs in the report.")
    if fmt == "html":
        return render_html(runs, settings=settings, comparison=compare_runs(runs, baseline=baseline),
                           measurements=measurements)
    writers = {"md": to_markdown, "csv": to_csv, "json": to_json, "jsonl": to_jsonl, "sql": to_sql}
    if fmt not in writers:
        raise ReportError(f"Unknown report format {fmt!r}; use one of {', '.join(FORMATS)}.")
    text = writers[fmt](runs, baseline=baseline)
    if measurements and fmt in ("md", "json", "jsonl"):
        from models.results.measurement_report import json_objects, measurements_markdown

        if fmt == "md":
            text += measurements_markdown(measurements, settings)
        elif fmt == "jsonl":
            text += "".join(line + "\n" for line in json_objects(measurements))
        else:  # the same array: runs first, then each measurement as an object marked "measurement"
            text = text.rstrip().removesuffix("]").rstrip() + ",\n" + ",\n".join(json_objects(measurements, indent=2)) + "\n]\n"
    return text


def format_of(path: Path) -> str:
    """The report format a file name asks for (.md, .markdown, .csv, .json, .jsonl, .sql, .html, .htm)."""
    suffix = path.suffix.lower().lstrip(".")
    fmt = {"markdown": "md", "htm": "html", "ndjson": "jsonl"}.get(suffix, suffix)
    if fmt not in FORMATS:
        raise ReportError(f"Cannot tell the report format from {path.name!r}: name it .md, .csv, .json, .jsonl, "
                          ".sql or .html.")
    return fmt


def export_report(runs: Sequence[RunRecord], path: Path, *, fmt: str | None = None,
                  settings: Settings | None = None, baseline: int | None = None,
                  measurements: Sequence[Measurement] = ()) -> Path:
    """Write a report atomically: an existing file is replaced only once the new one is complete; a csv
    report's load tests and sweeps go beside it in NAME.measurements.csv."""
    fmt = fmt or format_of(path)
    text = render(runs, fmt, settings=settings, baseline=baseline, measurements=measurements)
    try:
        if fmt == "csv" and measurements:
            from models.results.measurement_report import csv_path, measurements_csv

            atomic_write_text(csv_path(path), measurements_csv(measurements), make_parents=False)
        atomic_write_text(path, text, make_parents=False)
    except OSError as error:
        raise ReportError(f"Cannot write the report {path}: {error.strerror or error}.") from error
    return path


# -- reading reports back --

def _typed(name: str, value: Any, default: Any) -> Any:
    """A value from json (typed) or csv (text) in the type of the field's default."""
    if name == "flash_attn":
        return _FLASH_ATTN_NAME.get(str(value), str(value))
    if isinstance(default, (list, dict)):
        parsed = json.loads(value) if isinstance(value, str) else value
        if not isinstance(parsed, type(default)):
            raise ValueError(f"{name} must be a {'list' if isinstance(default, list) else 'JSON object'}")
        return parsed
    if isinstance(default, bool):
        return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true")
    if isinstance(default, int):
        return int(float(value)) if isinstance(value, str) else int(value)
    if isinstance(default, float):
        return float(value)
    return "" if value is None else str(value)


def _record_from_row(row: dict[str, Any], where: str) -> RunRecord:
    missing = [name for name in REQUIRED_FIELDS if name not in row]
    if missing:
        raise ReportError(f"{where} lacks {', '.join(missing)}: not a complete Tokenometer report.")
    try:
        version = int(row["report_format"])
    except (TypeError, ValueError):
        raise ReportError(f"{where}: report_format {row['report_format']!r} is not a number.") from None
    if version > REPORT_FORMAT:
        raise ReportError(f"{where} was written by a newer Tokenometer (report format {version}; this version "
                          f"reads up to {REPORT_FORMAT}). Update Tokenometer to import it.")
    defaults = BenchResult()
    values: dict[str, Any] = {}
    try:
        for spec in fields(BenchResult):
            if spec.name in row and row[spec.name] not in (None, ""):
                values[spec.name] = _typed(spec.name, row[spec.name], getattr(defaults, spec.name))
        machine = parse_json(row["machine"], where) if isinstance(row["machine"], str) else row["machine"]
        energy_j = row.get("energy_j")
        energy = EnergyFigures(joules=float(energy_j), seconds=float(row.get("energy_seconds") or 0.0),
                               source=str(row.get("energy_source") or ""),
                               is_estimate=_typed("energy_is_estimate", row.get("energy_is_estimate"), False)) \
            if energy_j not in (None, "") else None
    except (TypeError, ValueError, OverflowError) as error:  # int("inf") overflows
        raise ReportError(f"{where} has a malformed value: {error}.") from None
    if not isinstance(machine, dict) or not machine:
        raise ReportError(f"{where}: the machine is missing or not an object.")
    result = BenchResult(**values)
    check_values(result, machine=machine, energy=(energy.joules, energy.seconds) if energy else None, where=where)
    if result.status not in ("ok", "failed", "cancelled"):
        raise ReportError(f"{where}: unknown status {result.status!r}.")
    if result.status == "ok" and not result.samples_ns:
        raise ReportError(f"{where} ({result.test or 'test'} of {Path(result.model_filename).name}) is marked ok "
                          "but has zero samples; the report is damaged.")
    if len(result.samples_ns) != len(result.samples_ts):
        raise ReportError(f"{where}: samples_ns and samples_ts differ in length.")
    model = {"repo": str(row.get("model_repo") or ""), "file": Path(result.model_filename).name,
             "sha256": str(row.get("model_sha") or result.model_sha256), "quant": str(row.get("model_quant") or ""),
             "n_params": result.model_n_params, "size": result.model_size, "model_type": result.model_type}
    return RunRecord(id=0, uid=run_uid(row, where), job=str(row.get("job") or ""), result=result, machine=machine,
                     machine_key=fingerprint_sha(machine), machine_label=machine_label(machine), model=model,
                     started_at=str(row.get("started_at") or result.test_time), ended_at=str(row.get("ended_at") or ""),
                     energy=energy)


def read_report(path: Path) -> list[RunRecord]:
    """Parse and check a json, jsonl or csv report this program wrote; any problem is a ReportError."""
    fmt = format_of(path)
    if fmt not in ("json", "jsonl", "csv"):
        raise ReportError(f"Only .json, .jsonl and .csv reports can be imported, not .{fmt}.")
    text = read_report_text(path)  # a regular file of a report's size; a CR inside a csv cell stays a CR
    rows: list[tuple[str, Any]] = []
    if fmt == "json":
        try:
            data = parse_json(text, path.name)
        except ValueError as error:
            if not isinstance(error, json.JSONDecodeError):  # NaN or Infinity
                raise ReportError(f"{path.name}: {error}; nothing was imported.") from None
            raise ReportError(f"{path.name} is not complete JSON (truncated or damaged at line {error.lineno}, "
                              f"column {error.colno}); nothing was imported.") from None
        if not isinstance(data, list):
            raise ReportError(f"{path.name} is not a Tokenometer report: expected a JSON array of runs.")
        rows = [(f"{path.name}, run {i + 1}", item) for i, item in enumerate(data)]
    elif fmt == "jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((f"{path.name}, line {number}", parse_json(line, f"{path.name}, line {number}")))
            except ValueError as error:
                if not isinstance(error, json.JSONDecodeError):  # NaN or Infinity
                    raise ReportError(f"{path.name}, line {number}: {error}; nothing was imported.") from None
                raise ReportError(f"{path.name}: line {number} is not complete JSON (truncated or damaged); "
                                  "nothing was imported.") from None
    else:
        try:
            rows = _csv_rows(text, path)
        except csv.Error as error:  # e.g. a cell over the csv module's field size limit
            raise ReportError(f"{path.name} is not a readable CSV report ({error}); nothing was imported.") from None
    if not rows:
        raise ReportError(f"{path.name} holds no runs.")
    records = []
    for where, item in rows:
        if not isinstance(item, dict):
            raise ReportError(f"{where} is not an object; not a Tokenometer report.")
        if "measurement" in item and "run_uid" not in item:
            continue  # a load test or batched sweep: the report carries it, an import takes runs only
        records.append(_record_from_row(item, where))
    if not records:
        raise ReportError(f"{path.name} holds no runs.")
    return records


def _csv_rows(text: str, path: Path) -> list[tuple[str, Any]]:
    """The csv report's rows by line number; a row with a different number of cells is refused."""
    rows: list[tuple[str, Any]] = []
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [name for name in REQUIRED_FIELDS if name not in header]
    if missing:
        raise ReportError(f"{path.name} lacks the column(s) {', '.join(missing)}; nothing was imported.")
    for number, item in enumerate(reader, start=2):
        if None in item or any(value is None for value in item.values()):
            raise ReportError(f"{path.name}: line {number} has a different number of cells than the header "
                              "(truncated or damaged); nothing was imported.")
        # Take off the quote the export put before text a spreadsheet would run as a formula.
        item = {name: csv_text_back(_REPORT_FIELD_BY_NAME[name], value) if name in _REPORT_FIELD_BY_NAME
                else value for name, value in item.items()}
        rows.append((f"{path.name}, line {number}", item))
    return rows


def import_report(path: Path, store: ResultsStore) -> tuple[int, int]:
    """Join another machine's report into the store, all or nothing; returns (added, already present)."""
    records = read_report(path)
    added, skipped = store.import_runs(records, source=path.name)
    log.info("Imported %d runs from %s (%d already present)", added, path, skipped)
    return added, skipped
