"""The HTML report's trust labels (with their reasons), intervals and LocalScore rows, as HTML fragments."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from html import escape

from models.bench.trust.adaptive import ci95
from models.bench.spec import BenchResult
from models.results.compare import Comparison

log = logging.getLogger(__name__)


def trust_tag(label: str, reasons: str) -> str:
    """A trust label other than ok, with its reasons as the tooltip (the notes under the table repeat them)."""
    title = f' title="{escape(reasons)}"' if reasons else ""
    return f'<span class="trust" data-trust="{escape(label)}"{title}>{escape(label)}</span>'


def trust_notes(comparison: Comparison, labels: Sequence[str]) -> str:
    """Every figure labelled other than ok, and why (models.bench.trust.labels): a printout has no tooltips."""
    items = [f"<li>{escape(label)} · {escape(test)}: {trust_tag(row.trust[test], '')}"
             + (f" — {escape(row.trust_notes[test])}" if row.trust_notes.get(test) else "") + "</li>"
             for row, label in zip(comparison.rows, labels) for test in row.trust]
    if not items:
        return ""
    return ('<p class="sub">Figures to trust less (ok: spread within 5%, no drift, no other load, no swapping, '
            f'every layer where asked):</p><ul class="trust-notes">{"".join(items)}</ul>')


def interval_tag(result: BenchResult) -> str:
    """The 95% interval of the mean as a share of it, and with -r auto whether it reached its target."""
    if len(result.samples_ts) < 2 or result.avg_ts <= 0:
        return ""
    share = (result.ci95_ts or ci95(result.samples_ts)) / result.avg_ts
    goal = (" ✓" if result.ci_met else f", target ±{result.ci_target:.0%} missed") if result.ci_target else ""
    return (f' <span class="tag" title="95% confidence interval of the mean (Student t)">95% CI '
            f'±{share:.1%}{goal}</span>')


def localscore_rows(comparison: Comparison, labels: Sequence[str]) -> list[list[str]]:
    """Model, machine, settings and LocalScore for each row that ran LocalScore's preset."""
    return [[escape(label), escape(row.machine_label), escape(row.settings_label),
             f'<b class="num">{row.localscore:,.0f}</b>']
            for row, label in zip(comparison.rows, labels) if row.localscore]
