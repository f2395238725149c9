"""Batched results written as llama-batched-bench writes them: its table, its jsonl keys, plus csv and json."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Any, TextIO

from models.bench.record_printer import RecordPrinter
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
_WIDTHS = (6, 6, 4, 6) + (8,) * 6


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


class BatchedPrinter(RecordPrinter):
    """llama-batched-bench's table per model in md; its jsonl keys (plus ours) in csv, json and jsonl."""

    FORMATS = FORMATS
    KEYS = ALL_KEYS

    def __init__(self, fmt: str, stream: TextIO) -> None:
        super().__init__(fmt, stream)
        self._model = ""

    def md_row(self, rec: dict[str, Any]) -> None:
        out = self.stream
        if rec["model_filename"] != self._model:
            self._model = rec["model_filename"]
            out.write(f"\n{printable(str(rec['model_filename']))}\n{settings_line(rec)}\n\n")
            out.write("|" + " | ".join(f"{h:>{w}}" for h, w in zip(_TABLE_HEAD, _WIDTHS)) + " |\n")
            out.write("|" + "-|-".join("-" * w for w in _WIDTHS) + "-|\n")
        out.write(table_row(rec) + "\n")


def format_records(records: Sequence[dict[str, Any]], fmt: str) -> str:
    """Every record in one format, as a string."""
    buffer = io.StringIO()
    printer = BatchedPrinter(fmt, buffer)
    for rec in records:
        printer.row(rec)
    printer.finish()
    return buffer.getvalue()
