"""Numbers as people read them, for the CLI, the GUI and reports alike: sizes, rates, durations, counts, money.

One convention for sizes everywhere: binary units (KiB, MiB, GiB = 1024-based), as llama.cpp logs its buffers
and llama-bench prints model sizes, so a figure here reads the same as in llama.cpp's own output."""

from __future__ import annotations

import logging
import math

log = logging.getLogger(__name__)

_BINARY = ("B", "KiB", "MiB", "GiB", "TiB")


def fmt_bytes(value: float | int | None) -> str:
    """A size in binary units: "512 B", "9.50 MiB", "93.8 MiB", "1.25 GiB"; "–" when unknown.
    A negative size (a shortfall, a headroom below zero) keeps its sign."""
    if value is None or not math.isfinite(value):
        return "–"
    if value < 0:
        return "-" + fmt_bytes(-value)
    size = float(value)
    for unit in _BINARY:
        if size < 1024 or unit == _BINARY[-1]:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}" if size < 10 else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def fmt_rate(tokens_per_s: float | None, spread: float | None = None) -> str:
    """Tokens per second with the spread when there is one: '123.4 ± 1.2 t/s'."""
    if tokens_per_s is None or not math.isfinite(tokens_per_s) or tokens_per_s <= 0:
        return "–"
    digits = 1 if tokens_per_s >= 10 else 2
    if spread:
        return f"{tokens_per_s:.{digits}f} ± {spread:.{digits}f} t/s"
    return f"{tokens_per_s:.{digits}f} t/s"


def fmt_speed(bytes_per_s: float | None) -> str:
    """A transfer rate: "12.3 MiB/s"."""
    if not bytes_per_s or bytes_per_s <= 0:
        return "–"
    return f"{fmt_bytes(bytes_per_s)}/s"


def fmt_ms(value_ms: float | None) -> str:
    if not value_ms or value_ms <= 0:
        return "–"
    if value_ms >= 1000:
        return f"{value_ms / 1000:.2f} s"
    return f"{value_ms:.1f} ms" if value_ms < 100 else f"{value_ms:.0f} ms"


def fmt_duration(seconds: float | None) -> str:
    """An ETA or elapsed time: '45 s', '3 min 05 s', '1 h 02 min'."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "–"
    total = int(round(seconds))
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def fmt_count(value: float | int | None) -> str:
    """Parameter and download counts: 135 M, 7.2 B, 12.3 k."""
    if value is None or value < 0:
        return "–"
    for threshold, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= threshold:
            scaled = value / threshold
            return f"{scaled:.1f} {suffix}" if scaled < 100 else f"{scaled:.0f} {suffix}"
    return f"{int(value)}"


def fmt_percent(fraction: float | None) -> str:
    if fraction is None:
        return "–"
    return f"{100 * fraction:.0f} %"


def fmt_money(value: float | None, *, currency: str = "") -> str:
    if value is None or not math.isfinite(value):
        return "–"
    text = f"{value:.4f}" if abs(value) < 1 else f"{value:.2f}"
    return f"{text} {currency}".strip()
