"""Benchmark results as text shaped like llama-bench's output: md, csv, json, jsonl and sql."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from models.bench.fields import (RESULT_FIELDS, csv_header, csv_line, field_named, json_object, params_text,
                                 result_values, size_text, speed_text, sql_create, sql_insert, text_value)
from models.bench.spec import DEFAULT_N_BATCH, DEFAULT_N_UBATCH, BenchResult, BenchSweep
from models.text import printable

log = logging.getLogger(__name__)

FORMATS = ("md", "csv", "json", "jsonl", "sql")


def row_dict(result: BenchResult) -> dict[str, Any]:
    """All fields in output order, typed as in llama-bench's json."""
    return result_values(result)


class Printer:
    """Writes results one at a time, as llama-bench does, so long sweeps show rows as they finish."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def header(self) -> None:
        pass

    def row(self, result: BenchResult) -> None:
        raise NotImplementedError

    def footer(self, results: Sequence[BenchResult]) -> None:
        pass


class CsvPrinter(Printer):
    def header(self) -> None:
        self.out.write(csv_header(RESULT_FIELDS))

    def row(self, result: BenchResult) -> None:
        self.out.write(csv_line(RESULT_FIELDS, row_dict(result)))
        self.out.flush()


class JsonPrinter(Printer):
    def __init__(self, out: TextIO) -> None:
        super().__init__(out)
        self.first = True

    def header(self) -> None:
        self.out.write("[\n")

    def row(self, result: BenchResult) -> None:
        if not self.first:
            self.out.write(",\n")
        self.first = False
        self.out.write(json_object(row_dict(result), indent=2))
        self.out.flush()

    def footer(self, results: Sequence[BenchResult]) -> None:
        self.out.write("\n]\n")


class JsonlPrinter(Printer):
    def row(self, result: BenchResult) -> None:
        self.out.write(json_object(row_dict(result)) + "\n")
        self.out.flush()


class SqlPrinter(Printer):
    def header(self) -> None:
        self.out.write(sql_create(RESULT_FIELDS) + "\n")

    def row(self, result: BenchResult) -> None:
        self.out.write(sql_insert(RESULT_FIELDS, row_dict(result)))
        self.out.flush()


class MarkdownPrinter(Printer):
    """llama-bench's table: model, size, params, backend, the parameters that were varied or not default, test, t/s."""

    WIDTHS = {"model": -30, "t/s": 20, "size": 10, "params": 10, "n_gpu_layers": 3, "n_threads": 7,
              "n_batch": 7, "n_ubatch": 8, "type_k": 6, "type_v": 6, "flash_attn": 3, "use_mmap": 4,
              "test": 15, "backend": -10}
    NAMES = {"n_gpu_layers": "ngl", "n_threads": "threads", "flash_attn": "fa", "use_mmap": "mmap"}

    def __init__(self, out: TextIO, columns: Sequence[str]) -> None:
        super().__init__(out)
        self.columns = list(columns)

    def header(self) -> None:
        cells = [f"{self.NAMES.get(c, c):{'<' if self.WIDTHS[c] < 0 else '>'}{abs(self.WIDTHS[c])}}"
                 for c in self.columns]
        rule = ["-" * (abs(self.WIDTHS[c]) - 1) + (":" if self.WIDTHS[c] > 0 else "-") for c in self.columns]
        self.out.write("| " + " | ".join(cells) + " |\n| " + " | ".join(rule) + " |\n")

    def cell(self, result: BenchResult, column: str) -> str:
        """A cell's text; names from files and imports are made printable so they cannot drive the terminal."""
        return printable(self._cell(result, column)).replace("|", "\\|")

    @staticmethod
    def _cell(result: BenchResult, column: str) -> str:
        if column == "model":
            return result.model_type or result.model_filename.rsplit("/", 1)[-1]
        if column == "size":
            return size_text(result.model_size) if result.model_size else "-"
        if column == "params":
            return params_text(result.model_n_params) if result.model_n_params else "-"
        if column == "backend":
            return result.backends or "CPU"
        if column == "test":
            return result.test
        if column == "t/s":
            return speed_text(result)
        return text_value(field_named(column), row_dict(result)[column])

    def row(self, result: BenchResult) -> None:
        cells = [f"{self.cell(result, c):{'<' if self.WIDTHS[c] < 0 else '>'}{abs(self.WIDTHS[c])}}"
                 for c in self.columns]
        self.out.write("| " + " | ".join(cells) + " |\n")
        self.out.flush()

    def footer(self, results: Sequence[BenchResult]) -> None:
        problems = [r for r in results if r.status != "ok"]
        if problems:
            self.out.write("\n")
            for r in problems:
                first = ((r.error or r.status).splitlines() or [r.status])[0]
                self.out.write(printable(f"{r.test} ({r.model_filename.rsplit('/', 1)[-1]}): {r.status}: {first}")
                               + "\n")
        commit = next((r.build_commit for r in results if r.build_commit), "unknown")
        number = next((r.build_number for r in results if r.build_commit), 0)
        self.out.write(printable(f"\nbuild: {commit} ({number})", newlines=True) + "\n")


def markdown_columns(values: Mapping[str, Iterable[Any]], *, cpu_backend: bool) -> list[str]:
    """Which parameter columns llama-bench would show: varied ones, non-default ones, threads on CPU, ngl on GPU."""
    defaults = {"n_batch": DEFAULT_N_BATCH, "n_ubatch": DEFAULT_N_UBATCH, "type_k": "f16", "type_v": "f16",
                "flash_attn": "auto", "use_mmap": True}
    columns = ["model", "size", "params", "backend"]
    if not cpu_backend:
        columns.append("n_gpu_layers")
    for name in ("n_threads", "n_batch", "n_ubatch", "type_k", "type_v", "flash_attn", "use_mmap"):
        seen = list(dict.fromkeys(values.get(name, ())))
        shown = len(seen) > 1 or (name == "n_threads" and cpu_backend) or \
            (name in defaults and seen and seen[0] != defaults[name])
        if shown:
            columns.append(name)
    return columns + ["test", "t/s"]


def sweep_values(sweep: BenchSweep) -> dict[str, list[Any]]:
    """The swept lists by BenchResult field name."""
    return {"n_threads": sweep.n_threads, "n_batch": sweep.n_batch, "n_ubatch": sweep.n_ubatch,
            "type_k": sweep.type_k, "type_v": sweep.type_v, "flash_attn": sweep.flash_attn,
            "use_mmap": [True if value is None else value for value in sweep.use_mmap]}  # None: load mode auto


def make_printer(fmt: str, out: TextIO, *, values: Mapping[str, Iterable[Any]] | None = None,
                 cpu_backend: bool = True) -> Printer:
    """A printer for one of FORMATS; `values` (swept lists by field) picks the markdown columns."""
    if fmt == "md":
        return MarkdownPrinter(out, markdown_columns(values or {}, cpu_backend=cpu_backend))
    printers = {"csv": CsvPrinter, "json": JsonPrinter, "jsonl": JsonlPrinter, "sql": SqlPrinter}
    if fmt not in printers:
        raise ValueError(f"Unknown output format {fmt!r}; use one of {', '.join(FORMATS)}.")
    return printers[fmt](out)


def format_results(results: Sequence[BenchResult], fmt: str = "md") -> str:
    """All results as one text in the given format (columns for md inferred from the results)."""
    buffer = io.StringIO()
    values = {name: [getattr(r, name) for r in results] for name in
              ("n_threads", "n_batch", "n_ubatch", "type_k", "type_v", "flash_attn", "use_mmap")}
    backends = next((r.backends for r in results if r.backends), "CPU")
    printer = make_printer(fmt, buffer, values=values, cpu_backend=_is_cpu_backend(backends))
    printer.header()
    for result in results:
        printer.row(result)
    printer.footer(results)
    return buffer.getvalue()


def _is_cpu_backend(backends: str) -> bool:
    return any(name in backends for name in ("CPU", "BLAS", "ZenDNN"))
