"""The comparison of selected runs: the core's Comparison as a table and as four Qt charts."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from PySide6.QtGui import QColor
from PySide6.QtWidgets import QGridLayout, QLabel, QWidget

from desktop.charts import bar_chart, short_name, unique_short, xy_chart
from desktop.metrics import model_where
from desktop.tables import Column
from models.results.compare import Comparison, CompareRow, Stat

log = logging.getLogger(__name__)

KIND_TIPS = {
    "throughput": "Tokens per second: the mean over the repetitions of this one run, ± the sample standard "
                  "deviation, (n = repetitions). Runs of one configuration in other sittings are their own rows.",
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
    if key in row.trust:
        text += f"  ⚠ {row.trust[key]}"  # the same words as the Trust column of the runs above
    return text


TRUST_COLOR = "#c77c02"  # the runs table's colour for a figure to trust less


def _figure_tip(row: CompareRow, key: str) -> str:
    """n, and for a figure labelled other than ok its label and why (models.bench.trust.labels)."""
    if key not in row.cells:
        return "no figure"
    tip = f"n = {row.cells[key].n}"
    if key in row.trust:
        reasons = row.trust_notes.get(key) or "no reason recorded"
        tip = f"{row.trust[key]}: {reasons}\n{tip}"
    return tip


def _cost_tip(cost: Any) -> str:
    if cost is None:
        return ("No cost: it needs a generation (tg) test and an energy figure (a sensor, or the system power "
                "set in Settings).")
    c = cost.currency
    lines = [f"Electricity {cost.energy_per_mtok:.4f} {c} + hardware {cost.hardware_per_mtok:.4f} {c} "
             f"per million generated tokens at {cost.tokens_per_second:.1f} t/s, rate and energy both from "
             f"{cost.test} (plain generation at the smallest depth, the longest such test).",
             f"A hosted API at {cost.api_per_mtok:.2f} {c} is "
             + ("dearer" if cost.cheaper_than_api_at_capacity else "cheaper") + " at full use."]
    if cost.energy_is_estimate:
        lines.append("Energy estimated from the system power in Settings, not measured.")
    return "\n".join(lines)


def _figure_column(col: Any) -> Column[CompareRow]:
    """One compared figure (a models.results.compare.Column) as a table column: mean ± spread, n in the tooltip."""
    key = col.key

    def mean(r: CompareRow) -> float | None:
        return r.cells[key].mean if key in r.cells else None

    return Column(f"{col.label} [{col.unit}]", mean, numeric=True, show=lambda r: _stat_text(r, key),
                  tip=KIND_TIPS.get(col.kind, "") + (" Higher is better." if col.higher_is_better
                                                     else " Lower is better.")
                  + (" ⚠ marks a figure to trust less (noisy, throttled, swapped, partial offload); hover for why."
                     if col.kind == "throughput" else ""),
                  cell_tip=lambda r: _figure_tip(r, key),
                  color=lambda r: QColor(TRUST_COLOR) if key in r.trust else None)


def localscore_column() -> Column[CompareRow]:
    """LocalScore's score of each row that ran its preset (models.bench.localscore), what it is in the tooltip."""
    from models.bench.localscore import ABOUT

    return Column("LocalScore", lambda r: r.localscore or None, numeric=True,
                  show=lambda r: f"{r.localscore:,.0f}" if r.localscore else "–", tip=ABOUT,
                  cell_tip=lambda r: ABOUT if r.localscore else
                  "Not a LocalScore run: the LocalScore preset runs its nine tests with its settings.")


def row_places(rows: Sequence[CompareRow], runs: Sequence[Any] = ()) -> dict[str, str]:
    """Each row's repo (where known) or the folder its file was in, by row key."""
    paths = {rec.id: rec.result.model_path or rec.result.model_filename for rec in runs}
    places = {}
    for row in rows:
        path = next((paths[i] for i in row.run_ids if paths.get(i)), "")
        places[row.key] = str(row.model.get("repo") or (model_where(path) if path else ""))
    return places


def _twins(rows: Sequence[CompareRow], places: dict[str, str]) -> set[str]:
    """Keys of rows whose file name another row shares while coming from somewhere else."""
    by_file: dict[str, set[str]] = {}
    for row in rows:
        by_file.setdefault(str(row.model.get("file")), set()).add(places.get(row.key, ""))
    return {row.key for row in rows if len(by_file[str(row.model.get("file"))]) > 1}


def comparison_columns(comparison: Comparison, settings: Any = None, *,
                       runs: Sequence[Any] = ()) -> list[Column[CompareRow]]:
    """Model, machine and settings, then one column per compared figure with its unit in the title
    (and the cost per million generated tokens, given the user's settings)."""
    places = row_places(comparison.rows, runs)
    twins = _twins(comparison.rows, places)

    def model_text(row: CompareRow) -> str:
        name = row.model_label
        if row.key in twins and places.get(row.key) and not row.model.get("repo"):
            name += f" — {places[row.key]}"  # the same file from two folders: say which
        if row.repeats > 1:  # the same configuration in several sittings: when, and which runs
            name += f" · {row.sitting}" + (" (runs disagree)" if row.disagrees else "")
        return name + (" (baseline)" if row.is_baseline else "")

    def model_tip(row: CompareRow) -> str:
        tip = f"{row.model_label}\nfrom {places[row.key]}" if places.get(row.key) else row.model_label
        tip += f"\n{row.sitting}"
        warnings = [w.text() for w in comparison.repeats if w.config_key == row.config_key and w.disagree]
        return "\n".join([tip, *warnings])

    columns: list[Column[CompareRow]] = [
        Column("Model", model_text, tip="The model file (with its Hub repo, or its folder where two rows share a "
                                        "file name).",
               cell_tip=model_tip),
        Column("Machine", lambda r: r.machine_label + (" (imported)" if r.imported else ""),
               tip="Where it ran; imported runs came from another machine's report."),
        Column("Settings", lambda r: r.settings_label, tip="The engine settings these runs share."),
    ]
    if any(row.localscore for row in comparison.rows):
        columns.append(localscore_column())
    columns += [_figure_column(col) for col in comparison.columns]
    if settings is not None:
        from models.results.cost import row_cost

        costs = {row.key: row_cost(row, settings=settings) for row in comparison.rows}

        def total(r: CompareRow) -> float | None:
            cost = costs.get(r.key)
            return cost.total_per_mtok if cost is not None else None

        def total_text(r: CompareRow) -> str:
            cost = costs.get(r.key)
            if cost is None:
                return "–"
            return f"{cost.total_per_mtok:.4f}" + (" (est.)" if cost.energy_is_estimate else "")

        columns.append(Column(
            f"Cost [{settings.currency} / 1M tokens]", total, numeric=True, show=total_text,
            tip="Electricity plus the hardware's cost spread over its lifetime, per million generated tokens "
                "(prices and lifetime from Settings).",
            cell_tip=lambda r: _cost_tip(costs.get(r.key))))
    return columns


LABEL_LIMIT = 36  # characters of a row's name beside its bars; the full name is in the tooltip
SETTING_WORDS = {"n_threads": "threads", "n_gpu_layers": "ngl", "n_batch": "batch", "n_ubatch": "ubatch",
                 "flash_attn": "fa", "type_k": "K", "type_v": "V", "use_mmap": "mmap"}


def chart_labels(rows: Sequence[CompareRow], runs: Sequence[Any] = ()) -> tuple[list[str], list[str]]:
    """(short, full) names that tell the rows apart by saying only what differs: the file (when files differ),
    its repo or folder (when one file name comes from two places), the settings, the machine. The short ones
    are unique and fit beside a chart's bars; the full ones are the tooltips."""
    varying = [key for key in (rows[0].settings if rows else {}) if len({str(r.settings.get(key)) for r in rows}) > 1]
    places = row_places(rows, runs)
    twins = _twins(rows, places)
    files = {str(r.model.get("file")) for r in rows}
    machines = {r.machine_key for r in rows}
    short, full = [], []
    for row in rows:
        file = str(row.model.get("file") or row.model_label).removesuffix(".gguf")
        place = places.get(row.key, "") if row.key in twins else ""
        settings = [f"{SETTING_WORDS.get(key, key)} {row.settings.get(key)}" for key in varying]
        machine = [short_name(row.machine_label, 16)] if len(machines) > 1 else []
        model = [short_name(file, 20)] if len(files) > 1 else []
        model += [short_name(place.split("/")[-1], 16)] if place else []
        # The same configuration in several sittings: the sitting's start time tells them apart.
        when = [row.started_at[11:16]] if row.repeats > 1 and row.started_at else []
        # Nothing differs but the run itself: the file names it.
        short.append(" · ".join(model + settings + machine + when) or short_name(file, 28))
        full.append(" · ".join([file + (f" from {place}" if place else "")] + settings + [row.machine_label]
                               + ([row.sitting] if row.repeats > 1 else [])))
    return unique_short(short, LABEL_LIMIT), full


def throughput_keys(comparison: Comparison) -> list[str]:
    """Every test with a throughput, in the comparison's order (depth, then pp before tg)."""
    return [c.key for c in comparison.columns if c.kind == "throughput"]


def comparison_charts(comparison: Comparison, runs: Sequence[Any]) -> QWidget:
    """Throughput per model, memory per model, speed against file size, throughput against depth."""
    rows = comparison.rows
    labels, full = chart_labels(rows, runs)
    grid = QWidget()
    layout = QGridLayout(grid)
    layout.setContentsMargins(0, 0, 0, 0)
    tests = throughput_keys(comparison)
    if not rows or not tests:
        layout.addWidget(QLabel("Select runs to compare." if not rows else
                                "No successful runs among those selected: nothing to chart."), 0, 0)
        return grid
    # The throughput chart holds every test: it gets the full width, its names room to be read.
    layout.addWidget(bar_chart("Throughput per model", labels,
                               {key: [r.cells[key].mean if key in r.cells else 0.0 for r in rows] for key in tests},
                               unit="tokens/s", tips=full), 0, 0, 1, 2)
    memory = {name: [r.cells[key].mean if key in r.cells else 0.0 for r in rows]
              for key, name in (("mem_peak_mib", "peak"), ("mem_anon_mib", "private"))}
    layout.addWidget(bar_chart("Memory per model", labels, memory, unit="MiB", tips=full), 1, 0)
    speed: dict[str, list[tuple[float, float]]] = {}
    for key in tests:
        for row in rows:
            if key in row.cells and row.model.get("size"):
                speed.setdefault(key, []).append((row.model["size"] / 2**30, row.cells[key].mean))
    layout.addWidget(xy_chart("Speed against file size", speed, x_title="file size, GiB", y_title="tokens/s",
                              lines=False), 1, 1)
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
                              y_title="tokens/s", lines=True), 2, 0, 1, 2)
    return grid
