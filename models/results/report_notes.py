"""The HTML report's trust labels (with their reasons) and LocalScore rows, as escaped HTML fragments."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from html import escape

from models.results.compare import Comparison

log = logging.getLogger(__name__)


def trust_tag(label: str, reasons: str) -> str:
    """A trust label other than ok, with its reasons as the tooltip (the notes under the table repeat them)."""
    title = f' title="{escape(reasons)}"' if reasons else ""
    return f'<span class="trust" data-trust="{escape(label)}"{title}>{escape(label)}</span>'


def trust_notes(comparison: Comparison, labels: Sequence[str]) -> str:
    """Every figure labelled other than ok, and why (models.bench.trust): a printout has no tooltips."""
    items = [f"<li>{escape(label)} · {escape(test)}: {trust_tag(row.trust[test], '')}"
             + (f" — {escape(row.trust_notes[test])}" if row.trust_notes.get(test) else "") + "</li>"
             for row, label in zip(comparison.rows, labels) for test in row.trust]
    if not items:
        return ""
    return ('<p class="sub">Figures to trust less (ok: spread within 5%, no drift, no other load, no swapping, '
            f'every layer where asked):</p><ul class="trust-notes">{"".join(items)}</ul>')


def localscore_rows(comparison: Comparison, labels: Sequence[str]) -> list[list[str]]:
    """Model, machine, settings and LocalScore for each row that ran LocalScore's preset."""
    return [[escape(label), escape(row.machine_label), escape(row.settings_label),
             f'<b class="num">{row.localscore:,.0f}</b>']
            for row, label in zip(comparison.rows, labels) if row.localscore]
