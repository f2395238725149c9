"""Reports: export stored runs as md, csv, json, jsonl, sql or html (llama-bench's names), and import them back."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from models import __version__
from models.bench.spec import BenchResult
from models.results.compare import compare_runs, format_comparison
from models.errors import ReportError
from models.results.store import EnergyFigures, ResultsStore, RunRecord, fingerprint_sha, machine_label
from models.settings import Settings

log = logging.getLogger(__name__)

REPORT_FORMAT = 1  # bump when a reader of this version could misread a newer file
FORMATS = ("md", "csv", "json", "jsonl", "sql", "html")

# llama-bench's fields that we have, in its order and with its meaning; its json puts the samples after them.
LLAMA_BENCH_FIELDS = (
    "build_commit", "build_number", "cpu_info", "gpu_info", "backends", "model_filename", "model_type",
    "model_size", "model_n_params", "n_batch", "n_ubatch", "n_threads", "type_k", "type_v", "n_gpu_layers",
    "flash_attn", "use_mmap", "n_prompt", "n_gen", "n_depth", "test_time", "avg_ns", "stddev_ns", "avg_ts",
    "stddev_ts")
SAMPLE_FIELDS = ("samples_ns", "samples_ts")
RESULT_EXTRAS = tuple(f.name for f in fields(BenchResult) if f.name not in LLAMA_BENCH_FIELDS + SAMPLE_FIELDS)
STORE_FIELDS = ("run_id", "run_uid", "job", "started_at", "ended_at", "model_repo", "model_quant", "model_sha",
                "energy_j", "energy_seconds", "energy_source", "energy_is_estimate", "imported_from",
                "machine_key", "machine_label", "machine", "report_format", "tokenometer_version")
ALL_FIELDS = LLAMA_BENCH_FIELDS + SAMPLE_FIELDS + RESULT_EXTRAS + STORE_FIELDS
# What an import cannot do without; everything else falls back to its default.
REQUIRED_FIELDS = ("report_format", "run_uid", "machine", "model_filename", "n_prompt", "n_gen", "status",
                   "samples_ns", "samples_ts", "test_time")
# llama-bench writes flash attention as its enum value.
FLASH_ATTN_VALUE = {"auto": -1, "off": 0, "on": 1}
_FLASH_ATTN_NAME = {str(v): k for k, v in FLASH_ATTN_VALUE.items()}
_FLOAT_FIELDS = {"avg_ts", "stddev_ts", "energy_j", "energy_seconds"}
_INT_FIELDS = {"flash_attn", "run_id", "report_format"}
_BOOL_FIELDS = {"energy_is_estimate"}


def report_row(rec: RunRecord) -> dict[str, Any]:
    """One run as one flat record: llama-bench's fields, the samples, our extras, the store's, the machine."""
    row = rec.result.to_json()
    row["flash_attn"] = FLASH_ATTN_VALUE.get(str(rec.result.flash_attn), rec.result.flash_attn)
    energy = rec.energy
    row.update({"run_id": rec.id, "run_uid": rec.uid, "job": rec.job, "started_at": rec.started_at,
                "ended_at": rec.ended_at, "model_repo": rec.model.get("repo", ""),
                "model_quant": rec.model.get("quant", ""), "model_sha": rec.model.get("sha256", ""),
                "energy_j": energy.joules if energy else None, "energy_seconds": energy.seconds if energy else None,
                "energy_source": energy.source if energy else "",
                "energy_is_estimate": energy.is_estimate if energy else False,
                "imported_from": rec.imported_from, "machine_key": rec.machine_key,
                "machine_label": rec.machine_label, "machine": rec.machine, "report_format": REPORT_FORMAT,
                "tokenometer_version": __version__})
    return {name: row.get(name) for name in ALL_FIELDS}


def _text(value: Any) -> str:
    """A value as text for csv and sql cells; lists and dicts as JSON so they read back exactly."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def to_json(runs: Sequence[RunRecord]) -> str:
    """llama-bench's json shape: an array of one object per test."""
    return json.dumps([report_row(r) for r in runs], indent=2) + "\n"


def to_jsonl(runs: Sequence[RunRecord]) -> str:
    return "".join(json.dumps(report_row(r), separators=(", ", ": ")) + "\n" for r in runs)


def to_csv(runs: Sequence[RunRecord]) -> str:
    """llama-bench's csv: a header of field names, every value quoted."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(ALL_FIELDS)
    for rec in runs:
        writer.writerow([_text(v) for v in report_row(rec).values()])
    return out.getvalue()


def _sql_type(name: str) -> str:
    if name in _FLOAT_FIELDS:
        return "REAL"
    if name in _INT_FIELDS or name in _BOOL_FIELDS:
        return "INTEGER"
    spec = next((f for f in fields(BenchResult) if f.name == name), None)
    if spec is not None and isinstance(spec.default, (bool, int)):
        return "INTEGER"
    if spec is not None and isinstance(spec.default, float):
        return "REAL"
    return "TEXT"


def to_sql(runs: Sequence[RunRecord]) -> str:
    """llama-bench's sql: CREATE TABLE IF NOT EXISTS llama_bench, then one INSERT per test."""
    columns = ",\n".join(f"  {name} {_sql_type(name)}" for name in ALL_FIELDS)
    lines = [f"-- Tokenometer report, format {REPORT_FORMAT}",
             f"CREATE TABLE IF NOT EXISTS llama_bench (\n{columns}\n);", ""]
    for rec in runs:
        values = []
        for name, value in report_row(rec).items():
            if value is None:
                values.append("NULL")
            elif _sql_type(name) in ("INTEGER", "REAL") and not isinstance(value, str):
                values.append(_text(value))
            else:
                values.append("'" + _text(value).replace("'", "''") + "'")
        lines.append(f"INSERT INTO llama_bench ({', '.join(ALL_FIELDS)}) VALUES ({', '.join(values)});")
    return "\n".join(lines) + "\n"


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.2f} MiB" if n_bytes < 2**30 else f"{n_bytes / 2**30:.2f} GiB"


def _params(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n < 1e9 else f"{n / 1e9:.2f} B"


def to_markdown(runs: Sequence[RunRecord]) -> str:
    """llama-bench's table (model, size, params, backend, threads, ngl, test, t/s) per machine, then the comparison."""
    lines = ["# Tokenometer report", "", f"Report format {REPORT_FORMAT}, Tokenometer {__version__}.", ""]
    machines: dict[str, list[RunRecord]] = {}
    for rec in runs:
        machines.setdefault(rec.machine_key, []).append(rec)
    for group in machines.values():
        machine = group[0].machine
        lines += [f"## {group[0].machine_label}" + (" (imported)" if group[0].imported_from else ""), ""]
        facts = [("OS", machine.get("os")), ("CPU", machine.get("cpu")), ("cores", machine.get("cpu_cores")),
                 ("RAM", _size(int(machine["ram_total"])) if machine.get("ram_total") else None),
                 ("GPU driver", machine.get("gpu_driver")), ("llama.cpp", machine.get("llama_cpp_commit")),
                 ("llama-cpp-python", machine.get("llama_cpp_python_version"))]
        lines += [f"- {k}: {v}" for k, v in facts if v] + [""]
        lines += ["| model | size | params | backend | threads | ngl | test | t/s |",
                  "| :--- | ---: | ---: | :--- | ---: | ---: | ---: | ---: |"]
        for rec in group:
            r = rec.result
            speed = f"{r.avg_ts:.2f} ± {r.stddev_ts:.2f}" if r.status == "ok" else r.status
            model = (r.model_type or rec.model.get("file", "")).replace("|", "\\|")
            lines.append(f"| {model} | {_size(r.model_size)} | {_params(r.model_n_params)} | {r.backends or 'CPU'} "
                         f"| {r.n_threads} | {r.n_gpu_layers} | {r.test} | {speed} |")
        builds = sorted({f"{rec.result.build_commit} ({rec.result.build_number})" for rec in group})
        lines += ["", f"build: {', '.join(builds)}", ""]
    lines += ["## Comparison", "", format_comparison(compare_runs(runs))]
    return "\n".join(lines)


def render(runs: Sequence[RunRecord], fmt: str, *, settings: Settings | None = None) -> str:
    """A report of these runs in one format (md, csv, json, jsonl, sql, html); the HTML report shows the
    cost per million tokens when given the settings."""
    if not runs:
        raise ReportError("No runs selected: a report needs at least one run.")
    if fmt == "html":
        from models.results.report_html import render_html

        return render_html(runs, settings=settings)
    writers = {"md": to_markdown, "csv": to_csv, "json": to_json, "jsonl": to_jsonl, "sql": to_sql}
    if fmt not in writers:
        raise ReportError(f"Unknown report format {fmt!r}; use one of {', '.join(FORMATS)}.")
    return writers[fmt](runs)


def format_of(path: Path) -> str:
    """The report format a file name asks for (.md, .markdown, .csv, .json, .jsonl, .sql, .html, .htm)."""
    suffix = path.suffix.lower().lstrip(".")
    fmt = {"markdown": "md", "htm": "html", "ndjson": "jsonl"}.get(suffix, suffix)
    if fmt not in FORMATS:
        raise ReportError(f"Cannot tell the report format from {path.name!r}: name it .md, .csv, .json, .jsonl, "
                          ".sql or .html.")
    return fmt


def export_report(runs: Sequence[RunRecord], path: Path, *, fmt: str | None = None,
                  settings: Settings | None = None) -> Path:
    """Write a report atomically: an existing file is replaced only once the new one is complete."""
    text = render(runs, fmt or format_of(path), settings=settings)
    temp: str | None = None
    try:
        handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        os.replace(temp, path)
    except OSError as error:
        if temp is not None:
            Path(temp).unlink(missing_ok=True)
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
        machine = json.loads(row["machine"]) if isinstance(row["machine"], str) else row["machine"]
        energy_j = row.get("energy_j")
        energy = EnergyFigures(joules=float(energy_j), seconds=float(row.get("energy_seconds") or 0.0),
                               source=str(row.get("energy_source") or ""),
                               is_estimate=_typed("energy_is_estimate", row.get("energy_is_estimate"), False)) \
            if energy_j not in (None, "") else None
    except (TypeError, ValueError) as error:
        raise ReportError(f"{where} has a malformed value: {error}.") from None
    if not isinstance(machine, dict) or not machine:
        raise ReportError(f"{where}: the machine is missing or not an object.")
    result = BenchResult(**values)
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
    return RunRecord(id=0, uid=str(row["run_uid"]), job=str(row.get("job") or ""), result=result, machine=machine,
                     machine_key=fingerprint_sha(machine), machine_label=machine_label(machine), model=model,
                     started_at=str(row.get("started_at") or result.test_time), ended_at=str(row.get("ended_at") or ""),
                     energy=energy)


def read_report(path: Path) -> list[RunRecord]:
    """Parse and check a json, jsonl or csv report this program wrote; any problem is a ReportError."""
    fmt = format_of(path)
    if fmt not in ("json", "jsonl", "csv"):
        raise ReportError(f"Only .json, .jsonl and .csv reports can be imported, not .{fmt}.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ReportError(f"Cannot read the report {path}: {error}.") from error
    rows: list[tuple[str, Any]] = []
    if fmt == "json":
        try:
            data = json.loads(text)
        except ValueError as error:
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
                rows.append((f"{path.name}, line {number}", json.loads(line)))
            except ValueError:
                raise ReportError(f"{path.name}: line {number} is not complete JSON (truncated or damaged); "
                                  "nothing was imported.") from None
    else:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = reader.fieldnames or []
        missing = [name for name in REQUIRED_FIELDS if name not in header]
        if missing:
            raise ReportError(f"{path.name} lacks the column(s) {', '.join(missing)}; nothing was imported.")
        for number, item in enumerate(reader, start=2):
            if None in item or any(value is None for value in item.values()):
                raise ReportError(f"{path.name}: line {number} has a different number of cells than the header "
                                  "(truncated or damaged); nothing was imported.")
            rows.append((f"{path.name}, line {number}", item))
    if not rows:
        raise ReportError(f"{path.name} holds no runs.")
    records = []
    for where, item in rows:
        if not isinstance(item, dict):
            raise ReportError(f"{where} is not an object; not a Tokenometer report.")
        records.append(_record_from_row(item, where))
    return records


def import_report(path: Path, store: ResultsStore) -> tuple[int, int]:
    """Join another machine's report into the store, all or nothing; returns (added, already present)."""
    records = read_report(path)
    added, skipped = store.import_runs(records, source=path.name)
    log.info("Imported %d runs from %s (%d already present)", added, path, skipped)
    return added, skipped
