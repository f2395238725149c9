"""The comparison of selected runs: the core's Comparison as a table and as four Qt charts."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from PySide6.QtWidgets import QGridLayout, QLabel, QWidget

from desktop.charts import bar_chart, xy_chart
from desktop.tables import Column
from models.results.compare import Comparison, CompareRow, Stat

log = logging.getLogger(__name__)

KIND_TIPS = {
    "throughput": "Tokens per second: the mean over every repetition of the grouped runs, ± the sample standard "
                  "deviation, (n = repetitions).",
    "ttft": "Time to first token for a real chat prompt, in milliseconds.",
    "load": "Time to load the model and create the context, in milliseconds.",
    "memory": "Memory of the worker process in MiB: peak = VmHWM, private = RssAnon.",
    "energy": "Energy per token in joules, from RAPL/NVML sensors (or an estimate from the settings' watts).",
}


def _stat_text(row: CompareRow, key: str) -> str:
    stat: Stat | None = row.cells.get(key)
    if stat is None:
        return "–"
    digits = 1 if stat.mean >= 10 else 2
    text = f"{stat.mean:.{digits}f} ± {stat.spread:.{digits}f}"
    if key in row.diffs and not row.is_baseline:
        text += f"  ({row.diffs[key]:+.0f} %)"
    return text


def _cost_tip(cost: Any) -> str:
    if cost is None:
        return ("No cost: it needs a generation (tg) test and an energy figure (a sensor, or the system power "
                "set in Settings).")
    c = cost.currency
    lines = [f"Electricity {cost.energy_per_mtok:.4f} {c} + hardware {cost.hardware_per_mtok:.4f} {c} "
             f"per million generated tokens at {cost.tokens_per_second:.1f} t/s.",
             f"A hosted API at {cost.api_per_mtok:.2f} {c} is "
             + ("dearer" if cost.cheaper_than_api_at_capacity else "cheaper") + " at full use."]
    if cost.energy_is_estimate:
        lines.append("Energy estimated from the system power in Settings, not measured.")
    return "\n".join(lines)


def comparison_columns(comparison: Comparison, settings: Any = None) -> list[Column[CompareRow]]:
    """Model, machine and settings, then one column per compared figure with its unit in the title
    (and the cost per million generated tokens, given the user's settings)."""
    columns: list[Column[CompareRow]] = [
        Column("Model", lambda r: r.model_label + (" (baseline)" if r.is_baseline else ""),
               tip="The model file (with its Hub repo where known)."),
        Column("Machine", lambda r: r.machine_label + (" (imported)" if r.imported else ""),
               tip="Where it ran; imported runs came from another machine's report."),
        Column("Settings", lambda r: r.settings_label, tip="The engine settings these runs share."),
    ]
    for col in comparison.columns:
        columns.append(Column(
            f"{col.label} [{col.unit}]", lambda r, key=col.key: r.cells[key].mean if key in r.cells else None,
            numeric=True, show=lambda r, key=col.key: _stat_text(r, key),
            tip=KIND_TIPS.get(col.kind, "") + (" Higher is better." if col.higher_is_better else " Lower is better."),
            cell_tip=lambda r, key=col.key: (f"n = {r.cells[key].n}" if key in r.cells else "no figure")))
    if settings is not None:
        from models.results.cost import row_cost

        costs = {row.key: row_cost(row, settings=settings) for row in comparison.rows}
        columns.append(Column(
            f"Cost [{settings.currency} / 1M tokens]",
            lambda r: costs[r.key].total_per_mtok if costs.get(r.key) else None, numeric=True,
            show=lambda r: f"{costs[r.key].total_per_mtok:.4f}" + (" (est.)" if costs[r.key].energy_is_estimate
                                                                   else "") if costs.get(r.key) else "–",
            tip="Electricity plus the hardware's cost spread over its lifetime, per million generated tokens "
                "(prices and lifetime from Settings).",
            cell_tip=lambda r: _cost_tip(costs.get(r.key))))
    return columns


def _labels(rows: Sequence[CompareRow]) -> list[str]:
    """Short names that tell the rows apart: the model, then only the settings (or machine) that differ."""
    varying = [key for key in (rows[0].settings if rows else {}) if len({str(r.settings.get(key)) for r in rows}) > 1]
    short = {"n_threads": "threads", "n_gpu_layers": "ngl", "n_batch": "batch", "n_ubatch": "ubatch",
             "flash_attn": "fa", "type_k": "K", "type_v": "V", "use_mmap": "mmap"}
    models = {r.model_label for r in rows}
    machines = {r.machine_key for r in rows}
    labels = []
    for row in rows:
        parts = [str(row.model.get("file") or row.model_label).removesuffix(".gguf")] if len(models) > 1 else []
        parts += [f"{short.get(key, key)} {row.settings.get(key)}" for key in varying]
        if len(machines) > 1:
            parts.append(row.machine_label)
        labels.append(" · ".join(parts) or str(row.model.get("file") or row.model_label).removesuffix(".gguf"))
    return labels


def _first(comparison: Comparison, prefix: str) -> str | None:
    return next((c.key for c in comparison.columns if c.kind == "throughput" and c.key.startswith(prefix)
                 and "+" not in c.key and "@" not in c.key), None)


def comparison_charts(comparison: Comparison, runs: Sequence[Any]) -> QWidget:
    """Throughput per model, memory per model, speed against file size, throughput against depth."""
    rows = comparison.rows
    labels = _labels(rows)
    for position, label in enumerate(labels):
        # A category axis merges equal names; rows must stay apart even when only the machine differs.
        if labels.count(label) > 1:
            labels[position] = f"{label} #{labels[:position + 1].count(label)}"
    grid = QWidget()
    layout = QGridLayout(grid)
    layout.setContentsMargins(0, 0, 0, 0)
    if not rows:
        layout.addWidget(QLabel("Select runs to compare."), 0, 0)
        return grid
    tests = [key for key in (_first(comparison, "pp"), _first(comparison, "tg")) if key]
    layout.addWidget(bar_chart("Throughput per model", labels,
                               {key: [r.cells[key].mean if key in r.cells else 0.0 for r in rows] for key in tests},
                               unit="tokens/s"), 0, 0)
    memory = {name: [r.cells[key].mean if key in r.cells else 0.0 for r in rows]
              for key, name in (("mem_peak_mib", "peak"), ("mem_anon_mib", "private"))}
    layout.addWidget(bar_chart("Memory per model", labels, memory, unit="MiB"), 0, 1)
    speed: dict[str, list[tuple[float, float]]] = {}
    for key in tests:
        for row in rows:
            if key in row.cells and row.model.get("size"):
                speed.setdefault(key, []).append((row.model["size"] / 2**30, row.cells[key].mean))
    layout.addWidget(xy_chart("Speed against file size", speed, x_title="file size, GiB", y_title="tokens/s",
                              lines=False), 1, 0)
    depth: dict[str, list[tuple[float, float]]] = {}
    by_id = {rec.id: rec for rec in runs}
    for row, label in zip(rows, labels):
        for col in comparison.columns:
            if col.kind != "throughput" or col.key not in row.cells or "+" in col.key:
                continue
            rec = next((by_id[i] for i in row.run_ids if i in by_id and by_id[i].result.test == col.key), None)
            if rec is None:
                continue
            base = col.key.split(" @ ")[0]
            depth.setdefault(f"{label} · {base}", []).append((float(rec.result.n_depth), row.cells[col.key].mean))
    swept = {name: points for name, points in depth.items() if len({x for x, _ in points}) > 1}
    layout.addWidget(xy_chart("Throughput against context depth", swept or depth, x_title="context depth, tokens",
                              y_title="tokens/s", lines=True), 1, 1)
    return grid
