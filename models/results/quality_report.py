"""Quality measurements (perplexity, bits per byte, KL divergence) in the reports: one row per model measured, in
the md report's Quality table, the csv beside a report, and the HTML report's Quality section."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from models.results.measurements import Measurement
from models.text import printable

log = logging.getLogger(__name__)

# The csv columns a quality row fills (beside the load levels' and batched rows' in measurements.csv).
QUALITY_FIELDS = ("ppl", "ppl_err", "bits_per_byte", "kld_mean", "kld_err", "kld_median", "kld_p99", "kld_p999",
                  "same_top", "rms_dp", "n_ctx", "n_chunk", "n_scored", "text", "text_sha256", "reference_model",
                  "role")
_KLD = ("kld_mean", "kld_err", "kld_median", "kld_p99", "kld_p999", "same_top", "rms_dp")


def quality_row(m: Measurement) -> dict[str, Any]:
    """A quality measurement's figures, flat: perplexity ± error, bits per byte, the KLD block where it was measured
    against a reference (0 for the reference itself), the text and chunking it was measured on."""
    data, settings = m.data, m.settings
    text: dict[str, Any] = settings["text"] if isinstance(settings.get("text"), dict) else {}
    ref: dict[str, Any] = settings["reference"] if isinstance(settings.get("reference"), dict) else {}
    kld: dict[str, Any] = data["kld"] if isinstance(data.get("kld"), dict) else {}
    row: dict[str, Any] = {"ppl": data.get("ppl"), "ppl_err": data.get("ppl_err"),
                           "bits_per_byte": data.get("bits_per_byte"), "n_ctx": data.get("n_ctx"),
                           "n_chunk": data.get("n_chunk"), "n_scored": data.get("n_scored"),
                           "text": text.get("name", ""), "text_sha256": text.get("sha256", ""),
                           "reference_model": ref.get("model", ""), "role": settings.get("role", "")}
    row.update({key: kld.get(key) for key in _KLD})
    return row


def _num(value: Any, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _cells(m: Measurement) -> list[str]:
    """The columns people read: model, quant, PPL ± error, bits/byte, mean KLD ± error, same top %, reference,
    text and chunk size, when."""
    r = quality_row(m)
    kld = (f"{r['kld_mean']:.5f} ± {r['kld_err']:.5f}" if r["kld_mean"] is not None
           else "0 (the reference)" if r["role"] == "reference" and r["reference_model"] else "")
    same_top = "" if r["same_top"] is None else f"{100 * r['same_top']:.2f}"
    ppl = f"{r['ppl']:.4f} ± {r['ppl_err']:.4f}" if r["ppl"] is not None and r["ppl_err"] is not None else ""
    status = "" if m.status == "ok" else f" ({m.status})"
    return [m.model_name + status, str(m.model.get("quant", "")), str(r["reference_model"]),
            f"{r['text']}, {r['n_chunk']} × {r['n_ctx']} tokens", m.started_at[:16].replace("T", " "), ppl,
            _num(r["bits_per_byte"], 4), kld, same_top]


HEADERS = ["model", "quant", "reference", "text, chunks", "when", "PPL", "bits/byte", "mean KLD", "same top %"]


def quality_markdown(measurements: Sequence[Measurement]) -> list[str]:
    """The md report's Quality section (lines), or none when no quality measurement is given."""
    quality = [m for m in measurements if m.kind == "quality"]
    if not quality:
        return []

    def md(value: str) -> str:
        return printable(escape(value, quote=False)).replace("|", "\\|")

    lines = ["## Quality", "",
             "Perplexity as llama-perplexity computes it; bits per UTF-8 byte compare models with different "
             "tokenizers; mean KL divergence from the reference model's token probabilities.", "",
             "| " + " | ".join(HEADERS) + " |", "| :--- | :--- | :--- | :--- | :--- | ---: | ---: | ---: | ---: |"]
    lines += ["| " + " | ".join(md(cell) for cell in _cells(m)) + " |" for m in quality]
    return lines + [""]


def quality_html(measurements: Sequence[Measurement]) -> str:
    """The HTML report's Quality section, or "" when no quality measurement is given."""
    from models.results.report_html import _table

    quality = [m for m in measurements if m.kind == "quality"]
    if not quality:
        return ""
    rows = [[escape(cell) for cell in _cells(m)] for m in quality]
    return ('<h2>Quality</h2><p class="sub">Perplexity as llama-perplexity computes it; bits per UTF-8 byte compare '
            "models with different tokenizers; mean KL divergence from the reference model's token probabilities."
            "</p>" + _table(HEADERS, rows, 5))


def quality_report_parts(store: Any) -> tuple[list[Any], list[Measurement]]:
    """What the Quality page exports: every quality result and answer kept, and the runs of the same model files
    (their speed and memory: the other two axes of the choice; a report is built on runs). Both lists are empty
    when nothing was measured; the runs list is empty when those files were never benchmarked."""
    from models.results.measurements import list_measurements

    measurements = [m for m in list_measurements(store) if m.kind in ("quality", "answers")]
    files = {m.model.get("file") for m in measurements if m.model.get("file")}
    runs = [run for run in store.list_runs()
            if (run.model.get("file") or Path(run.result.model_filename).name) in files]
    return runs, measurements


def export_quality_report(store: Any, path: Path, *, fmt: str | None = None, settings: Any = None) -> str:
    """Write the Quality page's report (quality_report_parts) with the Results page's writer; returns what went
    in, in words. Nothing kept, or no run of the measured files, is refused with a ReportError saying so."""
    from models.errors import ReportError
    from models.results.reports import export_report

    runs, measurements = quality_report_parts(store)
    if not measurements:
        raise ReportError("Nothing to export: no quality result or answer is kept yet.")
    if not runs:
        raise ReportError("A report is built on runs, and the models measured here were never benchmarked: "
                          "benchmark them (their speed is the choice's other axis), then export.")
    export_report(runs, path, fmt=fmt, settings=settings, measurements=measurements)
    n = sum(m.kind == "quality" for m in measurements)

    def count(k: int, word: str) -> str:
        return f"{k} {word}{'s' if k != 1 else ''}"

    return (f"Saved {count(n, 'quality result')}, {count(len(measurements) - n, 'answer')} and "
            f"{count(len(runs), 'run')} to {path}")
