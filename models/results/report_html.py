"""One self-contained HTML report (no network): machines, models, tables and inline SVG charts."""

from __future__ import annotations

import datetime as _dt
import logging
import math
from collections.abc import Sequence
from html import escape
from typing import Any

from models import __version__
from models.results.compare import CompareRow, Comparison, Stat, compare_runs
from models.results.report_notes import interval_tag, localscore_rows, trust_notes, trust_tag
from models.results.report_rows import REPORT_FORMAT, row_labels
from models.results.store import RunRecord
from models.settings import Settings
from models.units import fmt_bytes

log = logging.getLogger(__name__)

SERIES = 6  # colour classes s0..s5, defined for light and dark in the stylesheet
_W = 760  # every chart's viewBox width; the page scales it

_CSS = """
:root{--bg:#fbfbfd;--fg:#1d1d1f;--muted:#6e6e73;--card:#fff;--line:#e3e3e8;--grid:#ececf1;
--s0:#3b6fb6;--s1:#e8871e;--s2:#3f9a55;--s3:#d4495b;--s4:#2b9ea3;--s5:#8e5ea2;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#121214;--fg:#ececf0;--muted:#9a9aa3;--card:#1c1c20;
--line:#2e2e35;--grid:#26262c;--s0:#6ea0e8;--s1:#f5a04a;--s2:#6cc57f;--s3:#f07180;--s4:#5cc6c9;--s5:#b98bd0}}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--fg);
font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1100px;margin:0 auto;padding:32px 24px 64px}h1{font-size:28px;margin:0 0 4px;letter-spacing:-.02em}
h2{font-size:19px;margin:40px 0 12px;letter-spacing:-.01em}.sub{color:var(--muted);margin:0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:14px}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:14px 16px}
.card h3{margin:0 0 8px;font-size:15px}dl{display:grid;grid-template-columns:auto 1fr;gap:2px 12px;margin:0;
font-size:13px}dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}
.charts{display:grid;grid-template-columns:1fr;gap:16px}figure{margin:0}figcaption{font-weight:600;margin-bottom:6px}
svg.chart{width:100%;height:auto;display:block}svg text{fill:var(--fg);font-size:12px}
svg .muted{fill:var(--muted)}svg .grid{stroke:var(--grid)}svg .axis{stroke:var(--line)}
.s0{fill:var(--s0);stroke:var(--s0)}.s1{fill:var(--s1);stroke:var(--s1)}.s2{fill:var(--s2);stroke:var(--s2)}
.s3{fill:var(--s3);stroke:var(--s3)}.s4{fill:var(--s4);stroke:var(--s4)}.s5{fill:var(--s5);stroke:var(--s5)}
path.line{fill:none;stroke-width:2}rect[data-point]{stroke:none}.err{stroke:var(--fg);opacity:.55}
.table-wrap{background:var(--card);border:1px solid var(--line);border-radius:12px;margin-bottom:12px}
table{border-collapse:collapse;width:100%;font-size:13px;font-variant-numeric:tabular-nums}
th,td{padding:6px 8px;border-bottom:1px solid var(--line);text-align:right;vertical-align:top}
th{font-weight:600;background:var(--card);position:sticky;top:0}td.l,th.l{text-align:left}
td,th{overflow-wrap:anywhere}.answer-text{white-space:pre-wrap;overflow-wrap:anywhere}.num{white-space:nowrap}td.l:first-child{min-width:8em}
@media print{main{max-width:none;padding:0}table{font-size:10px}th{position:static}.card,tr{break-inside:avoid}}
tr:last-child td{border-bottom:0}.up{color:var(--s2)}.down{color:var(--s3)}.tag{color:var(--muted);font-size:12px}
.empty{color:var(--muted);font-style:italic;padding:8px 0}.trust{color:var(--s1);font-size:12px;font-weight:600}footer{margin-top:48px;color:var(--muted);font-size:12px}
"""

# Records script errors in the page and marks when charts are in place, so a headless browser can check both.
_HEAD_SCRIPT = """window.__errors=[];function __rec(m){window.__errors.push(String(m));
var b=document.body;if(b){b.setAttribute('data-js-errors',String(window.__errors.length));
var p=document.getElementById('js-errors');if(p){p.textContent=window.__errors.join('\\n');}}}
window.onerror=function(msg,src,line,col){__rec(msg+' at '+line+':'+col);};
window.addEventListener('unhandledrejection',function(e){__rec('unhandled rejection: '+e.reason);});"""
_TAIL_SCRIPT = """(function(){var charts=document.querySelectorAll('svg.chart'),drawn=0,points=0;
for(var i=0;i<charts.length;i++){var n=charts[i].querySelectorAll('[data-point]').length;
charts[i].setAttribute('data-points',String(n));if(n>0){drawn++;}points+=n;}
var b=document.body;b.setAttribute('data-charts',String(charts.length));b.setAttribute('data-charts-drawn',String(drawn));
b.setAttribute('data-points',String(points));
var wraps=document.querySelectorAll('.table-wrap'),wide=0;for(var j=0;j<wraps.length;j++){
if(wraps[j].scrollWidth>wraps[j].clientWidth+1||wraps[j].getBoundingClientRect().right>
document.documentElement.clientWidth+1){wide++;}}b.setAttribute('data-tables',String(wraps.length));
b.setAttribute('data-wide-tables',String(wide));b.setAttribute('data-js-errors',String(window.__errors.length));
document.getElementById('js-errors').textContent=window.__errors.join('\\n');b.setAttribute('data-ready','1');})();"""


def _nice_max(value: float) -> float:
    """The axis end: the next 1, 2, 2.5 or 5 times a power of ten at or above the value."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if step * power >= value * 1.0001)


def _fmt(value: float) -> str:
    if float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"


def _legend(names: Sequence[str]) -> tuple[str, float]:
    """Legend entries that wrap onto new lines; returns the SVG and the height it takes."""
    parts, x, y = [], 0.0, 14.0
    for i, name in enumerate(names):
        width = 30 + 7.4 * len(name)
        if x and x + width > _W:
            x, y = 0.0, y + 18
        parts.append(f'<rect x="{x:.0f}" y="{y - 9:.0f}" width="10" height="10" rx="2" class="s{i % SERIES}"/>'
                     f'<text x="{x + 15:.0f}" y="{y:.0f}">{escape(name)}</text>')
        x += width
    return "".join(parts), y + 12


def _svg(body: str, height: float, label: str) -> str:
    return (f'<svg class="chart" viewBox="0 0 {_W} {height:.0f}" role="img" aria-label="{escape(label)}" '
            f'xmlns="http://www.w3.org/2000/svg">{body}</svg>')


def _bars(labels: Sequence[str], series: Sequence[tuple[str, Sequence[tuple[float, float] | None]]], *,
          unit: str, title: str) -> str:
    """Horizontal grouped bars with error whiskers; `series` is (name, [(mean, spread) or None per label])."""
    legend, top = _legend([name for name, _ in series])
    left, right, bar, gap = 290, 20, 14, 12
    top += 8
    group = bar * len(series) + gap
    height = top + group * len(labels) + 30
    peak = max((m + s for _, vals in series for v in vals if v for m, s in [v]), default=0.0)
    end = _nice_max(peak)
    scale = (_W - left - right) / end
    out = [legend]
    for k in range(6):
        x = left + scale * end * k / 5
        out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top - 6}" y2="{height - 26}"/>'
                   f'<text class="muted" x="{x:.1f}" y="{height - 10}" text-anchor="middle">{_fmt(end * k / 5)}</text>')
    out.append(f'<text class="muted" x="{_W - right}" y="{height - 10}" text-anchor="end" dy="-14">{escape(unit)}</text>')
    for row, label in enumerate(labels):
        y0 = top + row * group
        short = label if len(label) <= 42 else label[:41] + "…"
        out.append(f'<text x="{left - 8}" y="{y0 + group / 2 - 2:.1f}" text-anchor="end"><title>{escape(label)}'
                   f'</title>{escape(short)}</text>')
        for i, (name, values) in enumerate(series):
            value = values[row]
            if value is None:
                continue
            mean, spread = value
            y = y0 + i * bar
            out.append(f'<rect data-point class="s{i % SERIES}" x="{left}" y="{y:.1f}" width="{max(mean * scale, 1):.1f}"'
                       f' height="{bar - 3}" rx="2"><title>{escape(label)} — {escape(name)}: {_fmt(mean)} {escape(unit)}'
                       f' ± {_fmt(spread)}</title></rect>')
            if spread > 0:
                a, b = left + (mean - spread) * scale, left + (mean + spread) * scale
                mid = y + (bar - 3) / 2
                out.append(f'<path class="err" d="M{a:.1f} {mid:.1f}H{b:.1f}M{a:.1f} {mid - 3:.1f}V{mid + 3:.1f}'
                           f'M{b:.1f} {mid - 3:.1f}V{mid + 3:.1f}"/>')
    return _svg("".join(out), height, title)


def _xy(series: Sequence[tuple[str, Sequence[tuple[float, float, str]]]], *, x_unit: str, y_unit: str, title: str,
        lines: bool, labels: dict[tuple[float, float], str] | None = None) -> str:
    """A scatter (or line) chart; `series` is (name, [(x, y, tooltip)]); `labels` name points in the chart."""
    legend, top = _legend([name for name, _ in series])
    left, right, bottom = 64, 24, 44
    top += 24
    height = top + 300
    points = [p for _, pts in series for p in pts]
    x_end = _nice_max(max((p[0] for p in points), default=1.0))
    y_end = _nice_max(max((p[1] for p in points), default=1.0))
    sx, sy = (_W - left - right) / x_end, (height - top - bottom) / y_end
    out = [legend]
    for k in range(6):
        x, y = left + sx * x_end * k / 5, height - bottom - sy * y_end * k / 5
        out.append(f'<line class="grid" x1="{left}" x2="{_W - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
                   f'<text class="muted" x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{_fmt(y_end * k / 5)}</text>'
                   f'<text class="muted" x="{x:.1f}" y="{height - bottom + 18}" text-anchor="middle">'
                   f'{_fmt(x_end * k / 5)}</text>')
    out.append(f'<text class="muted" x="{_W - right}" y="{height - 6}" text-anchor="end">{escape(x_unit)}</text>'
               f'<text class="muted" x="{left - 8}" y="{top - 10}" text-anchor="end">{escape(y_unit)}</text>')
    for i, (name, pts) in enumerate(series):
        coords = [(left + x * sx, height - bottom - y * sy, tip) for x, y, tip in sorted(pts)]
        if lines and len(coords) > 1:
            path = "M" + "L".join(f"{x:.1f} {y:.1f}" for x, y, _ in coords)
            out.append(f'<path class="line s{i % SERIES}" d="{path}"/>')
        for x, y, tip in coords:
            out.append(f'<circle data-point class="s{i % SERIES}" cx="{x:.1f}" cy="{y:.1f}" r="5">'
                       f'<title>{escape(tip)}</title></circle>')
    placed: list[tuple[float, float, float]] = []  # (x0, x1, y) of labels already drawn
    for (px, py), text in sorted((labels or {}).items(), key=lambda item: -item[0][1]):
        x, y = left + px * sx, height - bottom - py * sy + 4
        anchor = "end" if x > _W - 160 else "start"
        x = x - 9 if anchor == "end" else x + 9
        x0, x1 = (x - 6.2 * len(text), x) if anchor == "end" else (x, x + 6.2 * len(text))
        # Nudge a label down until it clears the ones already placed, so close points stay readable.
        while any(a < x1 and x0 < b and abs(y - yy) < 13 for a, b, yy in placed):
            y += 13
        placed.append((x0, x1, y))
        out.append(f'<text class="muted" x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="11">'
                   f'{escape(text)}</text>')
    return _svg("".join(out), height, title)


def _row_labels(rows: Sequence[CompareRow], *, machine: bool = True) -> list[str]:
    """Row names that say only what differs between rows, always unique."""
    return row_labels(rows, machine=machine)


def _first(comparison: Comparison, kind: str) -> str | None:
    """The first depth-0 test of a kind (pp or tg) in the comparison's column order."""
    for col in comparison.columns:
        if col.kind == "throughput" and col.key.startswith(kind) and "@" not in col.key and "+" not in col.key:
            return col.key
    return None


def _charts(runs: Sequence[RunRecord], comparison: Comparison) -> list[tuple[str, str]]:
    rows, labels = comparison.rows, _row_labels(comparison.rows)
    charts: list[tuple[str, str]] = []
    pp, tg = _first(comparison, "pp"), _first(comparison, "tg")
    # Every test is charted (not only the first pp and tg), grouped by kind: pp and tg rates differ tenfold,
    # so each kind gets its own scale.
    for kind, name in (("pp", "Prompt processing"), ("tg", "Generation"), ("pg", "Prompt and generation")):
        keys = [c.key for c in comparison.columns if c.kind == "throughput"
                and ("pg" if "+" in c.key else c.key[:2]) == kind]
        if keys:
            bars = [(key, [(r.cells[key].mean, r.cells[key].spread) if key in r.cells else None for r in rows])
                    for key in keys]
            charts.append((f"{name} per model ({', '.join(keys)})",
                           _bars(labels, bars, unit="tokens/s", title=f"{name} throughput per model")))
    mib = 2**20
    fit = [(r.model, max((rec.result.fit_estimate.get("total", 0) for rec in runs if rec.id in r.run_ids),
                         default=0)) for r in rows]
    memory = [("peak (VmHWM)", [(r.cells["mem_peak_mib"].mean, r.cells["mem_peak_mib"].spread)
                                if "mem_peak_mib" in r.cells else None for r in rows]),
              ("private (RssAnon)", [(r.cells["mem_anon_mib"].mean, r.cells["mem_anon_mib"].spread)
                                     if "mem_anon_mib" in r.cells else None for r in rows]),
              ("fit estimate", [(total / mib, 0.0) if total else None for _, total in fit])]
    memory = [s for s in memory if any(v is not None for v in s[1])]
    if memory:
        charts.append(("Memory per model", _bars(labels, memory, unit="MiB", title="Memory per model")))
    speed = tg or pp
    if speed:
        by_machine: dict[str, list[tuple[float, float, str]]] = {}
        names: dict[tuple[float, float], str] = {}
        for r, label in zip(rows, labels):
            if speed in r.cells and r.model.get("size"):
                size = r.model["size"] / 2**30
                by_machine.setdefault(r.machine_label, []).append(
                    (size, r.cells[speed].mean, f"{label}: {r.cells[speed].mean:.2f} t/s at {size:.2f} GiB"))
                names[(size, r.cells[speed].mean)] = str(r.model.get("file", "")).removesuffix(".gguf")[:28]
        if by_machine:
            charts.append((f"Speed ({speed}) against file size",
                           _xy(list(by_machine.items()), x_unit="file size, GiB", y_unit="tokens/s",
                               title="Speed against file size", lines=False, labels=names)))
    for kind, name in (("pp", "Prompt processing"), ("tg", "Generation")):
        by_series: dict[str, list[tuple[float, float, str]]] = {}
        for r, label in zip(rows, labels):
            for col in comparison.columns:
                if col.kind != "throughput" or col.key not in r.cells or not col.key.startswith(kind) or "+" in col.key:
                    continue
                rec = next(x for x in runs if x.id in r.run_ids and x.result.test == col.key)
                series = f"{label} · {kind}{rec.result.n_prompt or rec.result.n_gen}"
                mean = r.cells[col.key].mean
                by_series.setdefault(series, []).append(
                    (float(rec.result.n_depth), mean, f"{series} at depth {rec.result.n_depth}: {mean:.2f} t/s"))
        swept = [(n, pts) for n, pts in by_series.items() if len({p[0] for p in pts}) > 1]
        if swept:
            more = f" (first {SERIES} of {len(swept)})" if len(swept) > SERIES else ""
            charts.append((f"{name} against context depth{more}",
                           _xy(swept[:SERIES], x_unit="context depth, tokens", y_unit="tokens/s",
                               title=f"{name} throughput against context depth", lines=True)))
    return charts


def _machines(runs: Sequence[RunRecord]) -> str:
    seen: dict[str, RunRecord] = {}
    for rec in runs:
        seen.setdefault(rec.machine_key, rec)
    cards = []
    for rec in seen.values():
        m = rec.machine
        gpus = ", ".join(str(g.get("name", g)) if isinstance(g, dict) else str(g) for g in m.get("gpus") or [])
        ram = fmt_bytes(int(m["ram_total"])) if m.get("ram_total") else ""
        facts = [("CPU", m.get("cpu")), ("cores", m.get("cpu_cores")), ("RAM", ram), ("GPUs", gpus or "none"),
                 ("driver", m.get("gpu_driver")), ("OS", m.get("os")),
                 ("backends", ", ".join(m["backends"]) if isinstance(m.get("backends"), list) else m.get("backends")),
                 ("llama.cpp", m.get("llama_cpp_commit")), ("llama-cpp-python", m.get("llama_cpp_python_version")),
                 ("origin", f"imported from {rec.imported_from}" if rec.imported_from else "this store")]
        rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in facts if v not in (None, ""))
        cards.append(f'<div class="card"><h3>{escape(rec.machine_label)}</h3><dl>{rows}</dl></div>')
    return f'<div class="cards">{"".join(cards)}</div>'


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], left: int) -> str:
    """A table whose first `left` columns are text (left-aligned); cells are already escaped HTML."""
    ths = "".join(f'<th class="{"l" if i < left else ""}">{h}</th>' for i, h in enumerate(head))
    trs = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{c}</td>' for i, c in enumerate(r))
                  + "</tr>" for r in rows)
    return f'<div class="table-wrap"><table><thead><tr>{ths}</tr></thead><tbody>{trs}</tbody></table></div>'


def _models(runs: Sequence[RunRecord]) -> str:
    seen: dict[str, dict[str, Any]] = {}
    for rec in runs:
        seen.setdefault(rec.model.get("sha256") or f"{rec.model['file']}:{rec.model['size']}", rec.model)
    rows = [[escape(m["file"]), escape(m.get("repo") or "–"), escape(m.get("quant") or "–"),
             f"{m['n_params'] / 1e6:,.1f} M" if m.get("n_params") else "–",
             fmt_bytes(m["size"]) if m.get("size") else "–",
             f'<span class="tag">{escape((m.get("sha256") or "")[:12]) or "–"}</span>'] for m in seen.values()]
    return _table(["file", "repo", "quant", "parameters", "size", "sha256"], rows, 3)


def _cell(stat: Stat | None) -> str:
    if stat is None:
        return "–"
    # Spaces between the parts let a narrow column wrap them instead of scrolling sideways.
    return (f'<b class="num">{stat.mean:,.2f}</b> <span class="num">± {stat.spread:,.2f}</span> '
            f'<span class="tag">n={stat.n}</span>')


_COLUMNS_PER_TABLE = 5  # figures per comparison table, so each fits a page (and a printout) without scrolling


def _comparison(comparison: Comparison) -> str:
    """The comparison as tables of at most _COLUMNS_PER_TABLE figures each, every one with the row names."""
    labels = _row_labels(comparison.rows, machine=False)
    columns = comparison.columns
    chunks = [columns[i:i + _COLUMNS_PER_TABLE] for i in range(0, len(columns), _COLUMNS_PER_TABLE)] or [[]]
    tables = []
    for chunk in chunks:
        head = ["model", "machine"] + [f"{escape(c.label)} <span class='tag'>{escape(c.unit)}</span>"
                                       for c in chunk]
        rows = []
        for row, label in zip(comparison.rows, labels):
            cells = [escape(label) + (' <span class="tag">baseline</span>' if row.is_baseline else "")
                     + (' <span class="tag">runs disagree</span>' if row.disagrees else ""),
                     escape(row.machine_label) + (' <span class="tag">imported</span>' if row.imported else "")]
            for col in chunk:
                text = _cell(row.cells.get(col.key))
                if col.key in row.diffs and not row.is_baseline:
                    diff = row.diffs[col.key]
                    good = (diff > 0) == col.higher_is_better
                    text += f' <span class="num {"up" if good else "down"}">{diff:+.1f}%</span>'
                if col.key in row.trust:
                    text += " " + trust_tag(row.trust[col.key], row.trust_notes.get(col.key, ""))
                cells.append(text)
            rows.append(cells)
        tables.append(_table(head, rows, 2))
    if comparison.repeats:
        # Sittings of one configuration are separate rows; here is how far their means spread, and where
        # they disagree beyond their own spreads.
        items = "".join(f"<li>{'<b>' if s.disagree else ''}{escape(s.text())}{'</b>' if s.disagree else ''}</li>"
                        for s in comparison.repeats)
        tables.append(f'<p class="sub">Configurations run more than once (never pooled):</p><ul>{items}</ul>')
    tables.append(trust_notes(comparison, labels))
    return "".join(tables)


def _localscore(comparison: Comparison) -> str:
    """LocalScore's score per sitting that ran its preset, with what it is (models.bench.localscore.ABOUT)."""
    from models.bench.localscore import ABOUT

    rows = localscore_rows(comparison, _row_labels(comparison.rows, machine=False))
    if not rows:
        return ""
    return (f'<h2>LocalScore</h2><p class="sub">{escape(ABOUT)}</p>'
            + _table(["model", "machine", "settings", "LocalScore"], rows, 3))


def _runs(runs: Sequence[RunRecord]) -> str:
    rows = []
    for rec in runs:
        r = rec.result
        speed = f"{r.avg_ts:.2f} ± {r.stddev_ts:.2f}" + interval_tag(r) if r.status == "ok" else escape(r.status)
        energy = (f"{rec.energy.joules_per_token(r):.3f}" + (" est." if rec.energy.is_estimate else "")
                  if rec.energy and rec.energy.joules_per_token(r) else "–")
        # Runs measured before labels existed say nothing rather than "ok".
        trust = "" if r.status != "ok" or not r.trust else \
            escape(r.trust) if r.trust == "ok" else trust_tag(r.trust, r.trust_reasons)
        rows.append([str(rec.id), escape(rec.model.get("file", "")), escape(r.test), escape(rec.machine_label),
                     escape(str(r.n_threads)), escape(str(r.n_gpu_layers)), speed, str(len(r.samples_ts)), f"{r.load_ms:.0f}",
                     f"{r.mem_peak / 2**20:.0f}" if r.mem_peak else "–", energy, trust, escape(r.test_time),
                     escape((r.error or "").splitlines()[0] if r.error else "")])
    return _table(["run", "model", "test", "machine", "threads", "ngl", "t/s", "n", "load ms", "peak MiB",
                   "J/token", "trust", "time", "error"], rows, 4)


def _money(value: float, currency: str) -> str:
    """An amount and its currency (from the settings: text a user typed, so escaped like any other)."""
    amount = f"{value:,.2f}" if value >= 1 else f"{value:.4f}"
    return f'<span class="num">{amount}</span> {escape(currency)}'


def _costs(comparison: Comparison, settings: Settings) -> str:
    from models.results.cost import format_tokens, row_cost

    rows = []
    for row, label in zip(comparison.rows, _row_labels(comparison.rows, machine=False)):
        cost = row_cost(row, settings=settings)
        if cost is None:
            continue
        cur = cost.currency
        est = ' <span class="tag">estimate</span>' if cost.energy_is_estimate else ""
        even = (f"{format_tokens(cost.break_even_tokens_per_month)} tokens"
                + ("" if cost.break_even_within_capacity else ' <span class="tag">beyond capacity</span>')
                if cost.break_even_tokens_per_month is not None else "never (API cheaper than electricity)")
        rows.append([escape(label), escape(row.machine_label),
                     f'{cost.tokens_per_second:.1f} <span class="tag">{escape(cost.test)}</span>',
                     f"{cost.joules_per_token:.3f}{est}", _money(cost.energy_per_mtok, cur),
                     _money(cost.hardware_per_mtok, cur), f"<b>{_money(cost.total_per_mtok, cur)}</b>",
                     _money(cost.api_per_mtok, cur), even, f"{format_tokens(cost.capacity_tokens_per_month)}"])
    if not rows:
        return ('<p class="empty">No cost: no generation test with an energy figure, and no system power in '
                'the settings to estimate one.</p>')
    s = settings
    inputs = (f"Electricity {s.electricity_price_per_kwh:g} {s.currency}/kWh · hardware {s.hardware_cost:,.0f} "
              f"{s.currency} over {s.hardware_lifetime_years:g} years at {s.hardware_hours_per_day:g} h/day · "
              f"hosted API {s.api_price_per_mtok:g} {s.currency} per 1M tokens.")
    return (f'<p class="sub">Per million generated tokens. {escape(inputs)} Rate and energy both from one '
            'generation test per run: plain tg at the smallest depth, the longest one (named beside the rate).</p>'
            + _table(["model", "machine", "t/s", "J/token", "energy", "hardware", "total", "API",
                      "break-even per month", "capacity per month"], rows, 2))


def _capacity(measurements: Sequence[Any], settings: Settings | None) -> str:
    """How many people each machine serves, and at what cost (models.results.measurement_report)."""
    if not measurements:
        return ""
    from models.results.measurement_report import answers_html, capacity_html

    from models.results.quality_report import quality_html

    answers = [m for m in measurements if m.kind == "answers"]
    figures = [m for m in measurements if m.kind not in ("answers", "quality")]
    html = quality_html(measurements)
    if figures:
        html += ('<h2>Capacity</h2><p class="sub">Load tests: tokens/s each person got and in all, and time to first '
                 'token, against people at once; the answer is the most people served within the SLO.</p>'
                 + capacity_html(figures, settings))
    if answers:
        html += ('<h2>Answers</h2><p class="sub">The same prompt to each model, side by side, with time to first '
                 'token and tokens/s; the sampling settings and seed are those they were made with.</p>'
                 + answers_html(answers))
    return html


def render_html(runs: Sequence[RunRecord], *, title: str = "Tokenometer report",
                comparison: Comparison | None = None, settings: Settings | None = None,
                measurements: Sequence[Any] = ()) -> str:
    """The whole report as one HTML document: no external files, no network; a capacity section where load
    tests or batched sweeps (models.results.measurements.Measurement) are given."""
    comparison = comparison or compare_runs(runs)
    charts = _charts(runs, comparison)
    figures = "".join(f'<figure class="card"><figcaption>{escape(caption)}</figcaption>{svg}</figure>'
                      for caption, svg in charts) or '<p class="empty">No successful runs to chart.</p>'
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machines = len({r.machine_key for r in runs})
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="generator" content="Tokenometer {__version__}"><meta name="report-format" content="{REPORT_FORMAT}">
<title>{escape(title)}</title><style>{_CSS}</style><script>{_HEAD_SCRIPT}</script></head>
<body data-ready="0" data-js-errors="0"><main>
<h1>{escape(title)}</h1>
<p class="sub">{len(runs)} runs on {machines} machine{'s' if machines != 1 else ''} · generated {now} · Tokenometer
{__version__}, report format {REPORT_FORMAT}</p>
<h2>Machines</h2>{_machines(runs)}
<h2>Models</h2>{_models(runs)}
<h2>Charts</h2><div class="charts">{figures}</div>
<h2>Comparison</h2><p class="sub">Mean ± sample standard deviation (n samples){
    "; changes against the baseline row" if comparison.baseline_key else ""}.</p>{_comparison(comparison)}
{_localscore(comparison)}
{"<h2>Cost</h2>" + _costs(comparison, settings) if settings is not None else ""}
{_capacity(measurements, settings)}
<h2>Every run</h2>{_runs(runs)}
<pre id="js-errors" hidden></pre>
<footer>Throughput measured as llama-bench does (tokens per second per repetition, then mean and spread).
Memory: peak resident (VmHWM), private (RssAnon); fit estimate from the model's size and context.</footer>
</main><script>{_TAIL_SCRIPT}</script></body></html>
"""
