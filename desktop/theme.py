"""Light and dark: the palette follows the system's colour scheme; one small style sheet for spacing."""

from __future__ import annotations

import logging
import os

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

log = logging.getLogger(__name__)

THEME_ENV = "TOKENOMETER_THEME"  # light | dark: overrides the system's colour scheme

STYLE = """
#brand { font-size: 17px; font-weight: 600; padding: 18px 18px 14px 18px; }
#sidePanel { background: palette(alternate-base); border-right: 1px solid palette(midlight); }
#sidebar { border: none; background: transparent; outline: 0; font-size: 14px; }
#sidebar::item { padding: 4px 12px; border-radius: 6px; margin: 1px 8px; }
#sidebar::item:selected { background: palette(highlight); color: palette(highlighted-text); }
#pageTitle { font-size: 20px; font-weight: 600; }
#pageHint { color: palette(placeholder-text); }
#muted { color: palette(placeholder-text); }
#formError { color: #d9534f; }
#notice { background: #fff4e5; color: #663c00; border: 1px solid #f0c36d; border-radius: 4px; padding: 6px 10px; }
#badge { border-radius: 4px; padding: 1px 6px; }
QTableView { gridline-color: palette(midlight); }
QGroupBox { font-weight: 600; }
QPushButton[segment="true"] { padding: 4px 14px; border: 1px solid palette(mid); border-radius: 4px;
    background: palette(button); }
QPushButton[segment="true"]:hover { border-color: palette(highlight); }
QPushButton[segment="true"]:checked { background: palette(highlight); color: palette(highlighted-text);
    border-color: palette(highlight); }
QGroupBox > * { font-weight: normal; }
"""


def _dark_palette() -> QPalette:
    palette = QPalette()
    roles = {
        QPalette.ColorRole.Window: "#202124", QPalette.ColorRole.WindowText: "#e8eaed",
        QPalette.ColorRole.Base: "#17181a", QPalette.ColorRole.AlternateBase: "#2a2b2e",
        QPalette.ColorRole.ToolTipBase: "#2a2b2e", QPalette.ColorRole.ToolTipText: "#e8eaed",
        QPalette.ColorRole.Text: "#e8eaed", QPalette.ColorRole.Button: "#2d2e31",
        QPalette.ColorRole.ButtonText: "#e8eaed", QPalette.ColorRole.BrightText: "#ff6b6b",
        QPalette.ColorRole.Highlight: "#3d6fd9", QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.Link: "#8ab4f8", QPalette.ColorRole.PlaceholderText: "#9aa0a6",
        QPalette.ColorRole.Light: "#3c3d40", QPalette.ColorRole.Midlight: "#333437",
        QPalette.ColorRole.Mid: "#4a4b4e", QPalette.ColorRole.Dark: "#101113", QPalette.ColorRole.Shadow: "#000000",
    }
    for role, color in roles.items():
        palette.setColor(role, QColor(color))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#6b6e73"))
    return palette


def is_dark() -> bool:
    forced = os.environ.get(THEME_ENV, "").lower()
    if forced in ("light", "dark"):
        return forced == "dark"
    return QGuiApplication.styleHints().colorScheme() == Qt.ColorScheme.Dark


def apply_theme(app: QApplication) -> None:
    """Light or dark after the system's colour scheme (Qt 6's style hints); called again when it changes."""
    style = app.style()
    app.setPalette(_dark_palette() if is_dark() else style.standardPalette())
    app.setStyleSheet(STYLE)


