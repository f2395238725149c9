"""Text from outside (Hub names, file names, imported reports) made safe to print: control characters shown, not run."""

from __future__ import annotations

import logging
import unicodedata

log = logging.getLogger(__name__)

# Characters that reorder what a terminal or an editor shows (bidirectional overrides and isolates, "Trojan Source").
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Control characters (C0, DEL, C1: ESC starts terminal sequences, CR rewrites a line), lone surrogates (cannot
# be encoded) and the Unicode line and paragraph separators (a new line to some readers).
_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def is_control(ch: str) -> bool:
    """True for a character that must never reach a terminal, a file name or a line-based format raw."""
    return ch in _BIDI or unicodedata.category(ch) in _CATEGORIES


def has_control(text: str) -> bool:
    """True when the text holds any character `is_control` refuses."""
    return any(is_control(ch) for ch in text)


def _escaped(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object, *, newlines: bool = False) -> str:
    """The value as text with every control character written as a visible escape (ESC as \\x1b), so a name
    from the Hub or an imported report cannot change the terminal's title, clear it or rewrite a line.
    With `newlines`, line feeds stay (for multi-line text this program built, such as a table)."""
    text = value if isinstance(value, str) else str(value)
    if not any(is_control(ch) for ch in text):
        return text
    return "".join(_escaped(ch) if is_control(ch) and not (newlines and ch == "\n") else ch for ch in text)


def plural(count: int, word: str, many: str | None = None) -> str:
    """"1 run", "2 runs": the count with the word in the form it takes (`many` for irregular plurals)."""
    return f"{count:,} {word if count == 1 else many or word + 's'}"
