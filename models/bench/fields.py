"""The one llama-bench-compatible serializer: each field's name, order and type, and its cell in csv, json and sql.

llama-bench keeps one `test` struct whose field list and types feed its csv, json, jsonl, sql and markdown
printers; this module is that table for Tokenometer. The benchmark output (models.bench.output) and the
reports (models.results.reports) both write through it, so their formats cannot drift apart.
"""

from __future__ import annotations

import csv
import enum
import io
import json
import logging
import math
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from models.bench.spec import BenchResult
from models.text import is_control

log = logging.getLogger(__name__)


class Kind(enum.Enum):
    """llama-bench's field types (STRING, BOOL, INT, FLOAT), plus JSON for Tokenometer's lists and objects."""

    STRING = "string"
    BOOL = "bool"
    INT = "int"
    FLOAT = "float"
    JSON = "json"


_SQL_TYPES = {Kind.STRING: "TEXT", Kind.BOOL: "INTEGER", Kind.INT: "INTEGER", Kind.FLOAT: "REAL", Kind.JSON: "TEXT"}


@dataclass(frozen=True)
class Field:
    """One column of every format."""

    name: str
    kind: Kind

    @property
    def sql_type(self) -> str:
        return _SQL_TYPES[self.kind]


# llama-bench's fields that Tokenometer has, in llama-bench's order and with its meaning; its json puts the
# samples after them; Tokenometer's own result fields follow.
LLAMA_BENCH_FIELDS = (
    "build_commit", "build_number", "cpu_info", "gpu_info", "backends", "model_filename", "model_type",
    "model_size", "model_n_params", "n_batch", "n_ubatch", "n_threads", "cpu_mask", "cpu_strict", "poll",
    "type_k", "type_v", "n_gpu_layers", "split_mode", "main_gpu", "no_kv_offload", "flash_attn", "tensor_split",
    "load_mode", "use_mmap", "n_prompt", "n_gen", "n_depth", "test_time", "avg_ns", "stddev_ns", "avg_ts",
    "stddev_ts")
SAMPLE_FIELDS = ("samples_ns", "samples_ts")
RESULT_EXTRAS = tuple(f.name for f in fields(BenchResult) if f.name not in LLAMA_BENCH_FIELDS + SAMPLE_FIELDS)

# llama-bench writes flash attention as its enum value (llama_flash_attn_type).
FLASH_ATTN_VALUE = {"auto": -1, "off": 0, "on": 1}
FLASH_ATTN_NAME = {str(v): k for k, v in FLASH_ATTN_VALUE.items()}


def _kind_of(annotation: Any) -> Kind:
    origin = typing.get_origin(annotation) or annotation
    if origin in (list, dict):
        return Kind.JSON
    return {bool: Kind.BOOL, int: Kind.INT, float: Kind.FLOAT}.get(origin, Kind.STRING)


def _result_fields() -> tuple[Field, ...]:
    hints = typing.get_type_hints(BenchResult)
    kinds = {name: _kind_of(hint) for name, hint in hints.items()}
    kinds["flash_attn"] = Kind.INT  # stored by name, written as llama-bench's number
    return tuple(Field(name, kinds[name]) for name in LLAMA_BENCH_FIELDS + SAMPLE_FIELDS + RESULT_EXTRAS)


RESULT_FIELDS: tuple[Field, ...] = _result_fields()
RESULT_FIELD_NAMES = tuple(f.name for f in RESULT_FIELDS)


def result_values(result: BenchResult) -> dict[str, Any]:
    """Every result field in output order, typed as llama-bench's json types it: flash_attn as -1/0/1, and
    ttft_ms None (an empty cell, JSON null) when time to first token was not measured rather than a false 0."""
    values = {name: getattr(result, name) for name in RESULT_FIELD_NAMES}
    values["flash_attn"] = FLASH_ATTN_VALUE.get(str(result.flash_attn), result.flash_attn)
    if not result.ttft_ms and not result.ttft_samples_ms:
        values["ttft_ms"] = None
    return values


# -- cells --

def _json_cell(value: Any) -> str:
    # ensure_ascii keeps every control character escaped (\u001b), so a JSON cell is printable text.
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def text_value(field: Field, value: Any) -> str:
    """A value as llama-bench writes it in csv (C++ std::to_string): bools 1/0, floats with six decimals
    (512.500000), lists and objects as compact JSON; None as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) or (field.kind is Kind.FLOAT and isinstance(value, int)):
        return f"{value:f}"
    if isinstance(value, (list, dict)):
        return _json_cell(value)
    return str(value)


# OWASP's CSV injection advice: a cell starting with one of these is a formula to a spreadsheet; prefix it
# with a single quote. A quote is prefixed too, so a reader can take exactly one leading quote off again.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def neutralise_formula(text: str) -> str:
    """Text a spreadsheet would run as a formula, with a leading quote; numbers (-1 included) left alone."""
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_cell(field: Field, value: Any) -> str:
    """A csv cell's text: text fields that a spreadsheet would run as a formula are neutralised; numbers
    (-1 included) stay numbers."""
    text = text_value(field, value)
    return neutralise_formula(text) if field.kind is Kind.STRING else text


def csv_text_back(field: Field, text: str) -> str:
    """Undo `csv_cell`'s neutralising quote, so a report imports with the values it was written from."""
    if field.kind is Kind.STRING and text.startswith("'"):
        return text[1:]
    return text


def csv_header(columns: Sequence[Field]) -> str:
    return ",".join(f.name for f in columns) + "\n"


def csv_line(columns: Sequence[Field], row: Mapping[str, Any]) -> str:
    """One record as llama-bench writes it: every cell quoted, embedded quotes doubled."""
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerow([csv_cell(f, row.get(f.name))
                                                                          for f in columns])
    return out.getvalue()


def sql_string(text: str) -> str:
    """A SQL string literal holding only printable characters: control characters go in as char() calls, so
    no NUL can cut the line and no newline can start a sqlite3 shell dot-command such as `.shell`."""
    parts: list[str] = []
    start = 0
    i = 0
    while i < len(text):
        if not is_control(text[i]):
            i += 1
            continue
        if i > start:
            parts.append("'" + text[start:i].replace("'", "''") + "'")
        run = i
        while i < len(text) and is_control(text[i]):
            i += 1
        parts.append("char(" + ", ".join(str(ord(ch)) for ch in text[run:i]) + ")")
        start = i
    if start < len(text) or not parts:
        parts.append("'" + text[start:].replace("'", "''") + "'")
    return parts[0] if len(parts) == 1 else "(" + " || ".join(parts) + ")"


def sql_literal(field: Field, value: Any) -> str:
    """A value as a SQL literal: numbers bare, text escaped by `sql_string`, None and non-finite floats NULL."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int) and field.kind in (Kind.INT, Kind.FLOAT, Kind.BOOL):
        return str(value)
    if isinstance(value, float) and field.kind in (Kind.INT, Kind.FLOAT):
        return repr(value) if math.isfinite(value) else "NULL"
    if isinstance(value, (list, dict)):
        return sql_string(_json_cell(value))
    return sql_string(str(value))


def sql_create(columns: Sequence[Field]) -> str:
    """llama-bench's table: CREATE TABLE IF NOT EXISTS llama_bench with each field's SQLite type."""
    body = ",\n".join(f"  {f.name} {f.sql_type}" for f in columns)
    return f"CREATE TABLE IF NOT EXISTS llama_bench (\n{body}\n);\n"


def sql_insert(columns: Sequence[Field], row: Mapping[str, Any]) -> str:
    values = ", ".join(sql_literal(f, row.get(f.name)) for f in columns)
    return f"INSERT INTO llama_bench ({', '.join(f.name for f in columns)}) VALUES ({values});\n"


def json_object(row: Mapping[str, Any], *, indent: int | None = None) -> str:
    """One record as JSON (control characters escaped); `indent` lays it out like llama-bench's json."""
    if indent is None:
        return json.dumps(dict(row), separators=(", ", ": "))
    pad = " " * indent
    body = ",\n".join(f"{pad}  {json.dumps(k)}: {json.dumps(v)}" for k, v in row.items())
    return f"{pad}{{\n{body}\n{pad}}}"


# -- llama-bench's markdown cells --

def size_text(n_bytes: int) -> str:
    """A model size as llama-bench's table shows it (MiB below 1 GiB, else GiB)."""
    return f"{n_bytes / 2**20:.2f} MiB" if n_bytes < 2**30 else f"{n_bytes / 2**30:.2f} GiB"


def params_text(n: int) -> str:
    """A parameter count as llama-bench's table shows it (M below a billion, else B)."""
    return f"{n / 1e6:.2f} M" if n < 1e9 else f"{n / 1e9:.2f} B"


def speed_text(result: BenchResult) -> str:
    """The t/s cell: mean ± sample standard deviation, or the status of a test that did not finish."""
    return f"{result.avg_ts:.2f} ± {result.stddev_ts:.2f}" if result.status == "ok" else result.status


def field_named(name: str, columns: Iterable[Field] = RESULT_FIELDS) -> Field:
    return next(f for f in columns if f.name == name)
