"""Load tests and batched sweeps in the reports: which go in, and how each format writes them (md section, json and
jsonl objects, a csv of their levels and rows, the HTML report's capacity section)."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from models.results.capacity import load_levels, measurement_answer, measurement_cost, started
from models.results.measurements import Measurement, list_measurements
from models.results.quality_report import QUALITY_FIELDS, quality_markdown, quality_row
from models.results.store import ResultsStore, RunRecord, machine_label
from models.settings import Settings
from models.text import printable

log = logging.getLogger(__name__)

REPORTED = ("load", "batched", "answers", "quality")
# The key that marks a measurement in a json or jsonl report; an import skips these objects (runs only).
MARK = "measurement"
LEVEL_FIELDS = ("concurrency", "rate", "completed", "failed", "input_tokens", "output_tokens", "duration_s",
                "request_throughput", "output_throughput", "total_token_throughput", "per_user_tps", "goodput",
                "slo_met", "ttft_ms", "tpot_ms", "e2e_p50_ms", "joules")
BATCHED_FIELDS = ("pp", "tg", "pl", "n_kv", "t_pp", "speed_pp", "t_tg", "speed_tg", "t", "speed")
CSV_FIELDS = ("measurement_uid", "kind", "model_filename", "model_repo", "target", "machine", "started_at", "status",
              "percentile", "slo_ttft_s", "slo_tpot_s") + LEVEL_FIELDS + BATCHED_FIELDS + QUALITY_FIELDS
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def report_measurements(store: ResultsStore, runs: Sequence[RunRecord], *, everything: bool) -> list[Measurement]:
    """The load tests and batched sweeps a report of `runs` carries: every one when the report is of every run,
    else those of the same model files (a test against a server, with no model file, goes in only with every run)."""
    stored = [m for m in list_measurements(store) if m.kind in REPORTED]
    if everything:
        return stored
    files = {str(run.model.get("file") or Path(run.result.model_filename).name) for run in runs}
    return [m for m in stored if m.model.get("file") and m.model["file"] in files]


def _level_row(level: Any, data: dict[str, Any]) -> dict[str, Any]:
    p = level.slo.percentile
    return {"concurrency": level.concurrency, "rate": level.rate, "completed": level.completed,
            "failed": level.failed, "input_tokens": level.input_tokens, "output_tokens": level.output_tokens,
            "duration_s": level.duration_s, "request_throughput": level.request_throughput,
            "output_throughput": level.output_throughput, "total_token_throughput": level.total_token_throughput,
            "per_user_tps": level.per_user_tps, "goodput": level.goodput, "slo_met": level.slo_met,
            "ttft_ms": level.ttft.at(p), "tpot_ms": level.tpot.at(p), "e2e_p50_ms": level.e2e.median,
            "joules": data.get("joules")}


def measurement_object(m: Measurement) -> dict[str, Any]:
    """One measurement for a json or jsonl report: its identity, settings, answer and levels or rows (each
    request's timings stay in the store: a load test holds thousands of them)."""
    out: dict[str, Any] = {MARK: m.kind, "uid": m.uid, "model_filename": m.model.get("file", ""),
                           "model_repo": m.model.get("repo", ""), "model_size": m.model.get("size", 0),
                           "target": m.target, "machine": machine_label(m.machine), "status": m.status,
                           "error": m.error, "started_at": m.started_at, "ended_at": m.ended_at,
                           "settings": m.settings, "answer": measurement_answer(m) if m.kind == "load" else m.answer}
    if m.kind == "load":
        out["levels"] = [level for level in m.data.get("levels") or []]
    elif m.kind in ("answers", "quality"):
        out["result"] = {k: v for k, v in m.data.items() if k != "prompt"}
    else:
        out["rows"] = [row for row in m.data.get("rows") or [] if not row.get("skipped")]
    return out


def json_objects(measurements: Sequence[Measurement], *, indent: int | None = None) -> list[str]:
    return [json.dumps(measurement_object(m), indent=indent, default=str, allow_nan=False) for m in measurements]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    text = f"{value:f}" if isinstance(value, float) else str(value)
    if isinstance(value, str) and text.startswith(_FORMULA_START):
        return "'" + text  # a spreadsheet would run it as a formula (OWASP's CSV injection advice)
    return text


def measurements_csv(measurements: Sequence[Measurement]) -> str:
    """One row per load level or batched row, with the measurement it belongs to; every cell quoted."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for m in measurements:
        if m.kind == "answers":
            continue  # text, not figures: in the md, json and html reports
        slo = (m.settings.get("plan") or {}).get("slo") or {}
        head = {"measurement_uid": m.uid, "kind": m.kind, "model_filename": m.model.get("file", ""),
                "model_repo": m.model.get("repo", ""), "target": m.target, "machine": machine_label(m.machine),
                "started_at": m.started_at, "status": m.status, "percentile": slo.get("percentile"),
                "slo_ttft_s": slo.get("ttft"), "slo_tpot_s": slo.get("tpot")}
        if m.kind == "load":
            body = [_level_row(level, data) for level, data in zip(load_levels(m), m.data.get("levels") or [])]
        elif m.kind == "quality":
            # Full precision: a mean KLD of 0.0068 would keep two significant digits at six decimals.
            body = [{k: repr(v) if isinstance(v, float) else v for k, v in quality_row(m).items()}] if m.data else []
        else:
            body = [{k: row.get(k) for k in BATCHED_FIELDS} for row in m.data.get("rows") or []
                    if not row.get("skipped")]
        for row in body:
            writer.writerow([_cell({**head, **row}.get(name)) for name in CSV_FIELDS])
    return out.getvalue()


def csv_path(report: Path) -> Path:
    """Where a csv report's measurements go: beside it (one csv holds one table, and the runs' table is
    llama-bench's)."""
    return report.with_name(report.stem + ".measurements.csv")


def _md(value: object) -> str:
    return printable(escape(str(value), quote=False)).replace("|", "\\|")


def measurements_markdown(measurements: Sequence[Measurement], settings: Settings | None = None) -> str:
    """The md report's capacity section: per load test its answer, cost and levels; per sweep its table."""
    if not measurements:
        return ""
    capacity = [m for m in measurements if m.kind in ("load", "batched")]
    lines = ["", "## Capacity", ""] if capacity else [""]
    for m in capacity:
        title = f"{m.model_name} · {m.target} · {started(m)}" + (f" ({m.status})" if m.status != "ok" else "")
        lines += [f"### {_md(title)}", ""]
        if m.kind == "load":
            lines += [_md(measurement_answer(m)), ""]
            if settings is not None and m.target == "llama.cpp":
                cost = measurement_cost(m, settings)
                lines += [f"Cost at that load: {_md(cost.describe()) if cost else 'not known'}", ""]
            lines += ["| people | SLO | each t/s | total t/s | TTFT ms | TPOT ms | done | failed |",
                      "| ---: | :--- | ---: | ---: | ---: | ---: | ---: | ---: |"]
            for level in load_levels(m):
                p = level.slo.percentile
                lines.append(f"| {level.concurrency} | {'met' if level.slo_met else 'missed'} | "
                             f"{level.per_user_tps:.1f} | {level.output_throughput:.1f} | {level.ttft.at(p):.0f} | "
                             f"{level.tpot.at(p):.1f} | {level.completed} | {level.failed} |")
        else:
            lines += ["| PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | T s | S t/s |",
                      "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
            for row in m.data.get("rows") or []:
                if not row.get("skipped"):
                    lines.append("| " + " | ".join(_md(f"{row.get(k):.3f}" if isinstance(row.get(k), float)
                                                       else row.get(k)) for k in BATCHED_FIELDS) + " |")
        lines.append("")
    lines += quality_markdown(measurements)
    answers = [m for m in measurements if m.kind == "answers"]
    if answers:
        lines += ["## Answers", ""]
        for group in answer_groups(answers):
            lines += [f"Prompt: {_md(group[0].settings.get('prompt', ''))}", "",
                      f"Sampling: {_md(sampling_text(group[0]))}", ""]
            for m in group:
                lines += [f"### {_md(m.model_name)}", "", f"*{_md(m.answer)}*", ""]
                lines += ["> " + _md(line) for line in str(m.data.get("text", "")).splitlines() or [""]]
                lines.append("")
    return "\n".join(lines)


def answer_groups(answers: Sequence[Measurement]) -> list[list[Measurement]]:
    """Answers to one prompt together (the group id they were saved with), oldest group first."""
    groups: dict[str, list[Measurement]] = {}
    for m in sorted(answers, key=lambda a: (a.started_at, a.id)):
        groups.setdefault(str(m.settings.get("group") or m.uid), []).append(m)
    return list(groups.values())


def sampling_text(m: Measurement) -> str:
    """The sampling settings and seed an answer was made with, in one line."""
    sampling = m.settings.get("sampling") or m.data.get("sampling") or {}
    return ", ".join(f"{key} {value}" for key, value in sampling.items()) or "not recorded"


def answers_html(answers: Sequence[Measurement]) -> str:
    """The HTML report's answers: per prompt, each model's answer in its own column, with its figures."""
    parts = []
    for group in answer_groups(answers):
        columns = "".join(
            f'<div class="card answer"><h4>{escape(m.model_name)}</h4><p class="sub">{escape(m.answer)}</p>'
            f'<div class="answer-text">{escape(str(m.data.get("text", "")))}</div></div>' for m in group)
        parts.append(f"<h3>Prompt: {escape(str(group[0].settings.get('prompt', '')))}</h3>"
                     f'<p class="sub">Sampling: {escape(sampling_text(group[0]))}</p>'
                     f'<div class="answers" style="display:grid;grid-template-columns:repeat({len(group)},minmax(0,1fr));'
                     f'gap:12px">{columns}</div>')
    return "".join(parts)


def capacity_html(measurements: Sequence[Measurement], settings: Settings | None) -> str:
    """The HTML report's capacity section: per load test the two charts (tokens/s per person and in all, and
    TTFT with the SLO line against people at once), the answer, the cost and the levels; sweeps as tables."""
    from models.results.report_html import _money, _table, _xy

    parts = []
    for m in measurements:
        if m.kind in ("answers", "quality"):
            continue  # answers_html and quality_report.quality_html, in their own sections
        title = f"{m.model_name} · {m.target} · {started(m)}" + (f" ({m.status})" if m.status != "ok" else "")
        if m.kind != "load":
            rows = [[escape(f"{row.get(k):.3f}" if isinstance(row.get(k), float) else str(row.get(k)))
                     for k in BATCHED_FIELDS] for row in m.data.get("rows") or [] if not row.get("skipped")]
            parts.append(f"<h3>Batched sweep: {escape(title)}</h3>"
                         + _table(["PP", "TG", "B", "N_KV", "T_PP s", "S_PP t/s", "T_TG s", "S_TG t/s", "T s",
                                   "S t/s"], rows, 0))
            continue
        levels = sorted(load_levels(m), key=lambda level: level.concurrency)
        if not levels:
            continue
        p = levels[0].slo.percentile
        speed = _xy([("per person t/s", [(lv.concurrency, lv.per_user_tps, f"{lv.concurrency} at once: "
                                          f"{lv.per_user_tps:.1f} t/s each") for lv in levels]),
                     ("total t/s", [(lv.concurrency, lv.output_throughput, f"{lv.concurrency} at once: "
                                     f"{lv.output_throughput:.1f} t/s in all") for lv in levels])],
                    x_unit="people at once", y_unit="tokens/s", title=f"Tokens/s against people at once: {title}",
                    lines=True)
        ttft = [(f"TTFT p{p:g}", [(lv.concurrency, lv.ttft.at(p) / 1000, f"{lv.concurrency} at once: TTFT "
                                   f"p{p:g} {lv.ttft.at(p) / 1000:.2f} s") for lv in levels])]
        limit = levels[0].slo.ttft
        if limit is not None:
            ttft.append((f"SLO {limit:g} s", [(0, limit, f"SLO: TTFT ≤ {limit:g} s"),
                                              (levels[-1].concurrency, limit, f"SLO: TTFT ≤ {limit:g} s")]))
        ttft_svg = _xy(ttft, x_unit="people at once", y_unit="seconds", lines=True,
                       title=f"Time to first token against people at once: {title}")
        cost_text = ""
        if settings is not None:
            cost = measurement_cost(m, settings) if m.target == "llama.cpp" else None
            if cost is not None:
                source = "estimated" if cost.energy_is_estimate else "measured"
                cost_text = (f'<p>Cost at {cost.concurrency} at once: <b>{_money(cost.per_mtok_output, cost.currency)}'
                             f'</b> per 1M output tokens (energy {source}, input processing included); the API '
                             f'would charge '
                             f'{_money(cost.api_per_mtok_output, cost.currency)} for the same traffic.</p>')
            else:
                cost_text = ('<p class="sub">Cost at that load: not known (no level met the SLO, the load ran on '
                             'another machine, or no power figure).</p>')
        rows = [[str(lv.concurrency), "met" if lv.slo_met else "missed", f"{lv.per_user_tps:.1f}",
                 f"{lv.output_throughput:.1f}", f"{lv.ttft.at(p):.0f}", f"{lv.tpot.at(p):.1f}", str(lv.completed),
                 str(lv.failed)] for lv in levels]
        parts.append(f"<h3>{escape(title)}</h3><p><b>{escape(measurement_answer(m))}</b></p>{cost_text}"
                     f'<div class="charts"><figure class="card"><figcaption>Tokens/s per person and in all'
                     f'</figcaption>{speed}</figure><figure class="card"><figcaption>TTFT p{p:g} with the SLO'
                     f"</figcaption>{ttft_svg}</figure></div>"
                     + _table(["people", "SLO", "each t/s", "total t/s", f"TTFT p{p:g} ms", f"TPOT p{p:g} ms",
                               "done", "failed"], rows, 0))
    return "".join(parts)
