"""Batched results written as llama-batched-bench writes them: its table, its jsonl keys, plus csv and json."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Sequence
from typing import Any, TextIO

from models.text import printable

log = logging.getLogger(__name__)

FORMATS = ("md", "csv", "json", "jsonl")

# llama-batched-bench's jsonl keys, in its order; ours (the model, the build) follow.
SETTINGS_KEYS = ("n_kv_max", "n_batch", "n_ubatch", "flash_attn", "is_pp_shared", "n_gpu_layers", "n_threads",
                 "n_threads_batch")
ROW_KEYS = ("pp", "tg", "pl", "n_kv", "t_pp", "speed_pp", "t_tg", "speed_tg", "t", "speed")
EXTRA_KEYS = ("model_filename", "model_type", "build_commit", "backends", "kv_unified")
ALL_KEYS = SETTINGS_KEYS + ROW_KEYS + EXTRA_KEYS

_TABLE_HEAD = ("PP", "TG", "B", "N_KV", "T_PP s", "S_PP t/s", "T_TG s", "S_TG t/s", "T s", "S t/s")


def record(row: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """One flat record with every key, the settings first as llama-batched-bench's jsonl has them."""
    merged = {**settings, **row}
    return {key: merged.get(key, "") for key in ALL_KEYS}


def settings_line(settings: dict[str, Any]) -> str:
    """llama-batched-bench's line above its table (n_kv_max, n_batch, ... n_threads_batch)."""
    return "main: " + ", ".join(f"{key} = {settings.get(key, '')}" for key in SETTINGS_KEYS)


def table_row(rec: dict[str, Any]) -> str:
    return "|{:>6} | {:>6} | {:>4} | {:>6} | {:>8.3f} | {:>8.2f} | {:>8.3f} | {:>8.2f} | {:>8.3f} | {:>8.2f} |".format(
        rec["pp"], rec["tg"], rec["pl"], rec["n_kv"], rec["t_pp"], rec["speed_pp"], rec["t_tg"], rec["speed_tg"],
        rec["t"], rec["speed"])


class BatchedPrinter:
    """Writes records as they arrive (md and jsonl stream; csv streams after its header; json at the end)."""

    def __init__(self, fmt: str, stream: TextIO) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        self.fmt = fmt
        self.stream = stream
        self.records: list[dict[str, Any]] = []
        self._model = ""
        self._csv: Any = None

    def row(self, rec: dict[str, Any]) -> None:
        self.records.append(rec)
        out = self.stream
        if self.fmt == "md":
            if rec["model_filename"] != self._model:
                self._model = rec["model_filename"]
                out.write(f"\n{printable(str(rec['model_filename']))}\n{settings_line(rec)}\n\n")
                out.write("|" + " | ".join(f"{h:>{w}}" for h, w in zip(_TABLE_HEAD, (6, 6, 4, 6) + (8,) * 6)) + " |\n")
                out.write("|" + "-|-".join("-" * w for w in (6, 6, 4, 6) + (8,) * 6) + "-|\n")
            out.write(table_row(rec) + "\n")
        elif self.fmt == "jsonl":
            out.write(json.dumps(rec) + "\n")
        elif self.fmt == "csv":
            if self._csv is None:
                self._csv = csv.DictWriter(out, fieldnames=ALL_KEYS, lineterminator="\n")
                self._csv.writeheader()
            self._csv.writerow({k: printable(v) if isinstance(v, str) else v for k, v in rec.items()})
        out.flush()

    def finish(self) -> None:
        if self.fmt == "json":
            json.dump(self.records, self.stream, indent=2)
            self.stream.write("\n")
            self.stream.flush()


def format_records(records: Sequence[dict[str, Any]], fmt: str) -> str:
    """Every record in one format, as a string."""
    buffer = io.StringIO()
    printer = BatchedPrinter(fmt, buffer)
    for rec in records:
        printer.row(rec)
    printer.finish()
    return buffer.getvalue()
