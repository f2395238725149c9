"""A stored run as one flat report row (the test's fields, then the store's), the report format, row labels."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from models import __version__
from models.bench.fields import RESULT_FIELDS, Field, Kind, result_values
from models.results.compare import CompareRow
from models.results.store import RunRecord

log = logging.getLogger(__name__)

REPORT_FORMAT = 1  # bump when a reader of this version could misread a newer file
FORMATS = ("md", "csv", "json", "jsonl", "sql", "html")

# What the store adds to each test's fields. Readers of an older report ignore a field they do not know.
STORE_FIELDS: tuple[Field, ...] = tuple(Field(name, kind) for name, kind in (
    ("run_id", Kind.INT), ("run_uid", Kind.STRING), ("job", Kind.STRING), ("started_at", Kind.STRING),
    ("ended_at", Kind.STRING), ("model_repo", Kind.STRING), ("model_quant", Kind.STRING), ("model_sha", Kind.STRING),
    ("energy_j", Kind.FLOAT), ("energy_seconds", Kind.FLOAT), ("energy_source", Kind.STRING),
    ("energy_is_estimate", Kind.BOOL), ("imported_from", Kind.STRING), ("machine_key", Kind.STRING),
    ("machine_label", Kind.STRING), ("machine", Kind.JSON), ("report_format", Kind.INT),
    ("tokenometer_version", Kind.STRING), ("is_baseline", Kind.BOOL)))
REPORT_FIELDS: tuple[Field, ...] = RESULT_FIELDS + STORE_FIELDS
REPORT_FIELD_NAMES = tuple(f.name for f in REPORT_FIELDS)


def report_row(rec: RunRecord, *, baseline: int | None = None) -> dict[str, Any]:
    """One run as one flat record: llama-bench's fields, the samples, our extras, the store's, the machine;
    `is_baseline` marks the run the comparison was made against."""
    row = result_values(rec.result)
    energy = rec.energy
    row.update({"run_id": rec.id, "run_uid": rec.uid, "job": rec.job, "started_at": rec.started_at,
                "ended_at": rec.ended_at, "model_repo": rec.model.get("repo", ""),
                "model_quant": rec.model.get("quant", ""), "model_sha": rec.model.get("sha256", ""),
                "energy_j": energy.joules if energy else None, "energy_seconds": energy.seconds if energy else None,
                "energy_source": energy.source if energy else "",
                "energy_is_estimate": energy.is_estimate if energy else False,
                "imported_from": rec.imported_from, "machine_key": rec.machine_key,
                "machine_label": rec.machine_label, "machine": rec.machine, "report_format": REPORT_FORMAT,
                "tokenometer_version": __version__, "is_baseline": baseline is not None and rec.id == baseline})
    return {name: row.get(name) for name in REPORT_FIELD_NAMES}


def row_labels(rows: Sequence[CompareRow], *, machine: bool = True) -> list[str]:
    """Row names that say only what differs between rows (model, then repo, settings, machine, then the sitting:
    date and run ids), and that are always unique: rows still alike get "#2", "#3"."""
    def file(r: CompareRow) -> str:
        return str(r.model.get("file", "")).removesuffix(".gguf")

    vary_repo = any(len({r.model.get("repo") or "" for r in rows if file(r) == name}) > 1
                    for name in {file(r) for r in rows})
    vary_settings = len({r.settings_label for r in rows}) > 1
    vary_machine = machine and len({r.machine_key for r in rows}) > 1
    labels = []
    for r in rows:
        parts = [file(r)]
        if vary_repo:
            parts.append(str(r.model.get("repo") or "no repo"))
        if vary_settings:
            parts.append(r.settings_label)
        if vary_machine:
            parts.append(r.machine_label)
        labels.append(" · ".join(parts))
    # Rows still alike are sittings of one configuration: their date and run ids tell them apart.
    labels = [label if labels.count(label) == 1 else f"{label} · {r.sitting}" for r, label in zip(rows, labels)]
    seen: dict[str, int] = {}
    unique = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if labels.count(label) == 1 else f"{label} #{seen[label]}")
    return unique
