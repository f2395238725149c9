"""Checks at the door for imported reports: a real file of sane size, JSON without NaN or hostile nesting,
numbers a benchmark can produce, and a run id that can identify the run."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import stat
from dataclasses import fields
from pathlib import Path
from typing import Any

from models.bench.spec import BenchResult
from models.errors import ReportError
from models.results.store import MAX_UID_LENGTH, NULL_UIDS, valid_uid

log = logging.getLogger(__name__)

# Far above any real report (a few KiB per run), far below what would exhaust memory when read whole.
MAX_REPORT_BYTES = 256 << 20
# The machine fingerprint and fit estimate are a few levels deep; deeper nesting is hostile, not data.
MAX_NESTING = 8
MAX_SAMPLES = 100_000

_TOKENS = (0, 2**32)  # a prompt, depth or batch beyond four billion tokens is not a benchmark that ran
_BYTES = (0, 2**60)
_NS = (0, 2**62)
# Each integer field's sensible range; any other integer must fit SQLite's and JSON's exact range.
_INT_RANGES: dict[str, tuple[int, int]] = {
    **dict.fromkeys(("n_prompt", "n_gen", "n_depth", "n_ctx", "n_batch", "n_ubatch", "ttft_prompt_tokens"), _TOKENS),
    "n_threads": (0, 1 << 20), "n_gpu_layers": (-1, 1 << 20),
    **dict.fromkeys(("model_size", "model_n_params", "mem_rss_anon", "mem_rss_file", "mem_peak", "buf_model",
                     "buf_kv", "buf_compute", "buf_output", "vram_used"), _BYTES),
    **dict.fromkeys(("avg_ns", "stddev_ns"), _NS),
}
_ANY_INT = (-(2**53), 2**53)
_MAX_FLOAT = 1e15  # tokens per second, milliseconds, joules: anything larger is not a measurement
# Measured floats that cannot be negative; other float fields may use -1 as "not measured".
_NON_NEGATIVE = {"avg_ts", "stddev_ts", "load_ms", "ttft_ms"}


def read_report_text(path: Path) -> str:
    """The report's text; a FIFO, device or folder (a FIFO would block the read for ever) or a file too large
    to be a report is refused before anything is read."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(
                info.st_mode) else "not a regular file"
            raise ReportError(f"Cannot import {path}: it is {kind}, not a report file.")
        if info.st_size > MAX_REPORT_BYTES:
            raise ReportError(f"Cannot import {path}: it is {info.st_size:,} bytes, more than a report can be "
                              f"({MAX_REPORT_BYTES >> 20} MiB); nothing was imported.")
        # O_NONBLOCK: should the path become a FIFO after the stat, the open still returns at once.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ReportError(f"Cannot import {path}: it is not a regular file.")
            data = handle.read(MAX_REPORT_BYTES + 1)
        # newline="" semantics: a CR inside a csv cell stays a CR.
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ReportError(f"Cannot read the report {path}: {error}.") from error


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"it holds {name}, which is not a number")


def parse_json(text: str, where: str) -> Any:
    """json.loads that refuses NaN and Infinity and reports hostile nesting as a ReportError."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ReportError(f"{where}: the JSON is nested too deeply to be a report; nothing was imported.") from None


def _depth_ok(value: Any, where: str, name: str) -> None:
    """Every number finite and exact, nesting at most MAX_NESTING, walked without recursion."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_NESTING:
            raise ReportError(f"{where}: {name} is nested more than {MAX_NESTING} levels deep; nothing was imported.")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, float) and (not math.isfinite(item) or abs(item) > 2.0**63):
            raise ReportError(f"{where}: {name} holds the number {item!r}; nothing was imported.")
        elif isinstance(item, int) and not isinstance(item, bool) and not -(2**63) <= item < 2**63:
            raise ReportError(f"{where}: {name} holds a number too large to be real; nothing was imported.")


def _number(where: str, name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ReportError(f"{where}: {name} is {value!r}, not a number; nothing was imported.")
    if not low <= value <= high:
        bounds = " to ".join(f"{b:,}" if isinstance(b, int) else f"{b:g}" for b in (low, high))
        raise ReportError(f"{where}: {name} is {value:.6g}, outside {bounds}; the report is damaged or not from "
                          "Tokenometer, and nothing was imported.")


def check_values(result: BenchResult, *, machine: Any, energy: tuple[float, float] | None, where: str) -> None:
    """Refuse a run whose numbers no benchmark can produce (NaN, Infinity, 10^30 tokens, negative sizes)."""
    for spec in fields(BenchResult):
        value = getattr(result, spec.name)
        if isinstance(value, bool) or isinstance(value, str):
            continue
        if isinstance(value, int):
            _number(where, spec.name, value, *_INT_RANGES.get(spec.name, _ANY_INT))
        elif isinstance(value, float):
            _number(where, spec.name, value, 0.0 if spec.name in _NON_NEGATIVE else -_MAX_FLOAT, _MAX_FLOAT)
        elif isinstance(value, list):
            if len(value) > MAX_SAMPLES:
                raise ReportError(f"{where}: {spec.name} holds {len(value):,} values, more than {MAX_SAMPLES:,}; "
                                  "nothing was imported.")
            for item in value:
                if isinstance(item, bool) or not isinstance(item, (int, float)):
                    raise ReportError(f"{where}: {spec.name} holds {item!r}, not a number; nothing was imported.")
                _number(where, spec.name, item, *(_NS if spec.name == "samples_ns" else (0.0, _MAX_FLOAT)))
        elif isinstance(value, dict):
            _depth_ok(value, where, spec.name)
    _depth_ok(machine, where, "the machine")
    if len(json.dumps(machine, default=str)) > 1 << 20:
        raise ReportError(f"{where}: the machine description is over 1 MiB; nothing was imported.")
    if energy is not None:
        for name, value in zip(("energy_j", "energy_seconds"), energy):
            _number(where, name, value, 0.0, _MAX_FLOAT)


def run_uid(row: dict[str, Any], where: str) -> str:
    """The row's run id; a missing, null or empty one (which must never be merged on) is replaced by an id
    derived from the row's content, so importing the same report twice still adds each run once."""
    uid = row.get("run_uid")
    if uid is not None and not isinstance(uid, str):
        raise ReportError(f"{where}: run_uid {uid!r} is not text; nothing was imported.")
    text = (uid or "").strip()
    if text.lower() not in NULL_UIDS:
        if not valid_uid(text):
            raise ReportError(f"{where}: run_uid is not a run id (over {MAX_UID_LENGTH} characters or control "
                              "characters); nothing was imported.")
        return text
    content = {k: v for k, v in row.items() if k not in ("run_uid", "run_id", "imported_from")}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:32]
    log.info("%s has no run id (%r); using imported-%s from its content", where, uid, digest)
    return f"imported-{digest}"
