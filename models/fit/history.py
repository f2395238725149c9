"""How far the memory estimate was from what llama.cpp allocated, per architecture, from the results history."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from models.results.store import RunRecord

log = logging.getLogger(__name__)

_BUFFERS = ("buf_model", "buf_kv", "buf_compute", "buf_output")


@dataclass(frozen=True)
class EstimateError:
    """Relative error of the estimate's total (estimate / measured - 1) over one architecture's runs."""

    architecture: str
    n_runs: int
    mean: float
    worst: float  # the largest error by size, with its sign
    models: int


def architecture_of(model_type: str) -> str:
    """llama.cpp's model description starts with the architecture ("qwen2 7B Q4_K - Medium" -> "qwen2")."""
    return model_type.split(" ", 1)[0] if model_type.strip() else "unknown"


def memory_estimate_errors(records: Iterable[RunRecord], *, machine_id: str = "") -> list[EstimateError]:
    """Per architecture, the error of models.fit.estimate's total against llama.cpp's logged buffers.

    Only ok runs with both an estimate and measured buffers count; `machine_id` keeps one machine's runs.
    """
    errors: dict[str, list[float]] = {}
    models: dict[str, set[str]] = {}
    for record in records:
        r = record.result
        if machine_id and record.machine.get("machine_id") != machine_id:
            continue
        measured = sum(getattr(r, name) for name in _BUFFERS)
        estimate = r.fit_estimate.get("total", 0) if isinstance(r.fit_estimate, dict) else 0
        if r.status != "ok" or measured <= 0 or estimate <= 0:
            continue
        arch = architecture_of(r.model_type)
        errors.setdefault(arch, []).append(estimate / measured - 1.0)
        models.setdefault(arch, set()).add(r.model_sha256 or r.model_filename or r.model_path)
    return [EstimateError(arch, len(values), statistics.fmean(values), max(values, key=abs), len(models[arch]))
            for arch, values in sorted(errors.items())]
