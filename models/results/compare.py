"""Runs side by side: one row per machine, model and settings; per test the mean, spread, n and change to a baseline."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from models.errors import ReportError
from models.results.store import RunRecord, fingerprint_sha

log = logging.getLogger(__name__)

MIB = 2**20


@dataclass(frozen=True)
class Stat:
    """A figure with its spread (sample standard deviation, n-1, as llama-bench) and sample count."""

    mean: float
    spread: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat | None:
        if not values:
            return None
        return cls(mean=statistics.fmean(values), spread=statistics.stdev(values) if len(values) > 1 else 0.0,
                   n=len(values))


@dataclass(frozen=True)
class Column:
    """One compared figure: a test's throughput (key = the test's name) or a fixed measure."""

    key: str
    label: str
    unit: str
    higher_is_better: bool
    kind: str  # "throughput", "ttft", "load", "memory", "energy"


@dataclass
class CompareRow:
    """One machine + model + settings, and its figures."""

    key: str
    model: dict[str, Any]
    model_label: str
    machine_key: str
    machine_label: str
    settings: dict[str, Any]
    run_ids: list[int] = field(default_factory=list)
    failed: int = 0  # runs that failed or were cancelled (left out of the figures)
    imported: bool = False
    energy_is_estimate: bool = False  # any of its energy figures came from a watts figure, not a sensor
    cells: dict[str, Stat] = field(default_factory=dict)
    diffs: dict[str, float] = field(default_factory=dict)  # percent change against the baseline row
    is_baseline: bool = False

    @property
    def settings_label(self) -> str:
        return settings_label(self.settings)


@dataclass
class Comparison:
    """The table: columns, rows, and which row is the baseline (if one was chosen)."""

    columns: list[Column]
    rows: list[CompareRow]
    baseline_key: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"columns": [asdict(c) for c in self.columns], "baseline": self.baseline_key,
                "rows": [{**asdict(r), "settings_label": r.settings_label} for r in self.rows]}


def settings_label(settings: dict[str, Any]) -> str:
    """Short settings text in llama-bench's option words."""
    kv = settings["type_k"] if settings["type_k"] == settings["type_v"] else f"{settings['type_k']}/{settings['type_v']}"
    text = (f"threads {settings['n_threads']} · ngl {settings['n_gpu_layers']} · batch {settings['n_batch']}/"
            f"{settings['n_ubatch']} · fa {settings['flash_attn']} · kv {kv}")
    return text if settings.get("use_mmap", True) else text + " · no mmap"


def model_label(model: dict[str, Any]) -> str:
    """The model as people name it: its file, with the repo where known."""
    return f"{model['repo']}/{model['file']}" if model.get("repo") else str(model.get("file") or "unknown model")


def _test_order(rec: RunRecord) -> tuple[int, int, int, int]:
    r = rec.result
    kind_rank = 0 if r.n_gen == 0 else 1 if r.n_prompt == 0 else 2
    return (r.n_depth, kind_rank, r.n_prompt, r.n_gen)


_FIXED = (
    Column("ttft_ms", "TTFT", "ms", False, "ttft"),
    Column("load_ms", "load", "ms", False, "load"),
    Column("mem_peak_mib", "peak memory", "MiB", False, "memory"),
    Column("mem_anon_mib", "private memory", "MiB", False, "memory"),
    Column("energy_pp", "energy, prompt", "J/token", False, "energy"),
    Column("energy_tg", "energy, generation", "J/token", False, "energy"),
)


def compare_runs(runs: Sequence[RunRecord], *, baseline: int | None = None) -> Comparison:
    """Group runs by machine, model and settings; with `baseline` (a run id), add each row's change against
    the baseline run's row in percent (positive = larger number, whatever the column's better direction)."""
    rows: dict[str, CompareRow] = {}
    grouped: dict[str, list[RunRecord]] = {}
    for rec in runs:
        model_key = rec.model.get("sha256") or f"{rec.model.get('file')}:{rec.model.get('size')}"
        key = fingerprint_sha({"machine": rec.machine_key, "model": model_key, "settings": rec.settings})[:16]
        if key not in rows:
            rows[key] = CompareRow(key=key, model=rec.model, model_label=model_label(rec.model),
                                   machine_key=rec.machine_key, machine_label=rec.machine_label,
                                   settings=rec.settings, imported=bool(rec.imported_from))
            grouped[key] = []
        rows[key].run_ids.append(rec.id)
        grouped[key].append(rec)
    ok_runs = sorted((r for r in runs if r.status == "ok"), key=_test_order)
    test_columns: list[Column] = []
    for rec in ok_runs:
        if rec.result.test not in {c.key for c in test_columns}:
            test_columns.append(Column(rec.result.test, rec.result.test, "t/s", True, "throughput"))
    for key, row in rows.items():
        _fill(row, grouped[key])
    used_fixed = [c for c in _FIXED if any(c.key in row.cells for row in rows.values())]
    comparison = Comparison(columns=test_columns + used_fixed, rows=list(rows.values()))
    if baseline is not None:
        base = next((row for row in comparison.rows if baseline in row.run_ids), None)
        if base is None:
            raise ReportError(f"The baseline run {baseline} is not among the compared runs.")
        base.is_baseline = True
        comparison.baseline_key = base.key
        for row in comparison.rows:
            for col_key, stat in row.cells.items():
                ref = base.cells.get(col_key)
                if ref is not None and ref.mean:
                    row.diffs[col_key] = (stat.mean - ref.mean) / ref.mean * 100.0
    return comparison


def _fill(row: CompareRow, records: list[RunRecord]) -> None:
    ok = [r for r in records if r.status == "ok"]
    row.failed = len(records) - len(ok)
    samples: dict[str, list[float]] = {}
    for rec in ok:
        samples.setdefault(rec.result.test, []).extend(rec.result.samples_ts)
    # Load time, TTFT and peak memory belong to a job (one model load), which every test result repeats.
    per_job: dict[str, RunRecord] = {}
    peak: dict[str, int] = {}
    anon: dict[str, int] = {}
    for rec in ok:
        job = rec.job or f"run{rec.id}"
        per_job.setdefault(job, rec)
        peak[job] = max(peak.get(job, 0), rec.result.mem_peak)
        anon[job] = max(anon.get(job, 0), rec.result.mem_rss_anon)
    measures: dict[str, list[float]] = {
        "ttft_ms": [t for r in per_job.values()
                    for t in (getattr(r.result, "ttft_samples_ms", None) or [r.result.ttft_ms]) if t > 0],
        "load_ms": [r.result.load_ms for r in per_job.values() if r.result.load_ms > 0],
        "mem_peak_mib": [v / MIB for v in peak.values() if v > 0],
        "mem_anon_mib": [v / MIB for v in anon.values() if v > 0],
        "energy_pp": [], "energy_tg": [],
    }
    for rec in ok:
        per_token = rec.energy.joules_per_token(rec.result) if rec.energy else None
        if per_token is not None:
            row.energy_is_estimate = row.energy_is_estimate or bool(rec.energy and rec.energy.is_estimate)
            measures["energy_pp" if rec.result.n_gen == 0 else "energy_tg"].append(per_token)
    for key, values in [*samples.items(), *measures.items()]:
        stat = Stat.of(values)
        if stat is not None:
            row.cells[key] = stat


def format_stat(stat: Stat | None, *, digits: int = 2) -> str:
    """"123.45 ± 1.20 (n=5)", or "–" for no figure."""
    if stat is None:
        return "–"
    return f"{stat.mean:.{digits}f} ± {stat.spread:.{digits}f} (n={stat.n})"


def format_comparison(comparison: Comparison) -> str:
    """The comparison as a Markdown table (for the terminal and Markdown reports)."""
    head = ["model", "machine", "settings"] + [f"{c.label} [{c.unit}]" for c in comparison.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * len(comparison.columns)) + "|"]
    for row in comparison.rows:
        cells = [row.model_label + (" (baseline)" if row.is_baseline else ""),
                 row.machine_label + (" (imported)" if row.imported else ""), row.settings_label]
        for col in comparison.columns:
            text = format_stat(row.cells.get(col.key))
            if col.key in row.diffs and not row.is_baseline:
                text += f" {row.diffs[col.key]:+.1f}%"
            cells.append(text)
        if row.failed:
            cells[0] += f" ({row.failed} failed)"
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
