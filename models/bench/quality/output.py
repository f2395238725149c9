"""Quality results (perplexity, bits per byte, KL divergence) as a table, CSV or JSON, one record per model."""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.bench.record_printer import RecordPrinter
from models.text import printable

log = logging.getLogger(__name__)

FORMATS = ("md", "csv", "json")

# One flat record: the settings, perplexity, then llama-perplexity --kl-divergence's summary (empty without one).
KEYS = ("model_filename", "text", "n_ctx", "n_chunk", "n_scored", "ppl", "ppl_err", "bits_per_byte", "kld_mean",
        "kld_err", "kld_median", "kld_p99", "kld_p999", "same_top", "same_top_err", "rms_dp", "rms_dp_err",
        "ppl_base", "ln_ppl_ratio", "ln_ppl_ratio_err", "seconds", "reference", "model_type", "token_sha256")

_HEAD = ("model", "PPL", "±", "bits/byte", "KLD", "±", "median", "p99", "p99.9", "same top", "RMS Δp", "time s")


def flat(result: dict[str, Any]) -> dict[str, Any]:
    """A worker's quality result (QualityResult JSON with text and model) as one record with every key."""
    merged = {**result, **(result.get("kld") or {})}
    return {key: merged.get(key, "") for key in KEYS}


def _num(value: Any, spec: str) -> str:
    if value == "" or value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, spec)


def _pct(value: Any) -> str:
    return "–" if value == "" or value is None else f"{100 * value:.2f}%"


def table_row(rec: dict[str, Any]) -> str:
    cells = (printable(Path(str(rec["model_filename"])).name), _num(rec["ppl"], ".4f"), _num(rec["ppl_err"], ".4f"),
             _num(rec["bits_per_byte"], ".4f"), _num(rec["kld_mean"], ".6f"), _num(rec["kld_err"], ".6f"),
             _num(rec["kld_median"], ".6f"), _num(rec["kld_p99"], ".6f"), _num(rec["kld_p999"], ".6f"),
             _pct(rec["same_top"]), _pct(rec["rms_dp"]), _num(rec["seconds"], ".1f"))
    return "| " + " | ".join(cells) + " |"


class QualityPrinter(RecordPrinter):
    """Writes each model's record as it arrives (md and csv stream; json at the end)."""

    FORMATS = FORMATS
    KEYS = KEYS

    def row(self, result: dict[str, Any]) -> None:
        super().row(flat(result))

    def md_row(self, rec: dict[str, Any]) -> None:
        if len(self.records) == 1:
            self.stream.write(f"text {printable(str(rec['text']))}: {rec['n_chunk']} chunks of {rec['n_ctx']} "
                              f"tokens, {rec['n_scored']} scored (llama-perplexity's method)\n\n")
            self.stream.write("| " + " | ".join(_HEAD) + " |\n|" + "---|" * len(_HEAD) + "\n")
        self.stream.write(table_row(rec) + "\n")

    def md_end(self) -> None:
        if any(r["kld_mean"] != "" for r in self.records):
            self.stream.write("\nKLD: mean KL divergence from the reference's token distribution (nats), its median "
                              "and 99th/99.9th percentiles; same top: how often both rank the same token first; "
                              "RMS Δp: root mean square change in the probability of the actual next token.\n")


def format_records(results: Sequence[dict[str, Any]], fmt: str) -> str:
    buffer = io.StringIO()
    printer = QualityPrinter(fmt, buffer)
    for result in results:
        printer.row(result)
    printer.finish()
    return buffer.getvalue()
