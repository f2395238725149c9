"""The pages of the main window, in sidebar order, with each one's title and hint, and the base every page builds on.

PAGES is the one list: the sidebar, the shortcuts (Ctrl+1..9), the start page and each page's heading read it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from desktop.context import AppContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PageInfo:
    name: str  # module in desktop.pages and the value of TOKENOMETER_START_PAGE
    title: str
    hint: str


PAGES: tuple[PageInfo, ...] = (
    PageInfo("discover", "Discover", "Find GGUF models on the Hugging Face Hub"),
    PageInfo("downloads", "Downloads", "The download queue; downloads resume where they stopped"),
    PageInfo("library", "Library", "The models on this machine"),
    PageInfo("hardware", "Hardware", "What this machine has, and what llama.cpp can use"),
    PageInfo("benchmark", "Benchmark", "Measure models with llama.cpp, the way llama-bench does"),
    PageInfo("results", "Results", "Every run; compare, chart and export"),
    PageInfo("settings", "Settings", "Folders, Hugging Face token, costs and defaults"),
    # Last, so the shortcuts people know (Ctrl+1..7) keep their pages.
    PageInfo("capacity", "Capacity", "How many people can this machine serve, and what a token costs then"),
    PageInfo("quality", "Quality", "How much a quant loses, and which model to take: quality, speed and memory"),
)


def page_info(name: str) -> PageInfo:
    """The entry of PAGES called `name`; KeyError names the pages there are."""
    for info in PAGES:
        if info.name == name:
            return info
    raise KeyError(f"no page {name!r}; the pages are {', '.join(info.name for info in PAGES)}")

SPACING = 12  # one spacing everywhere keeps pages consistent


class Page(QWidget):
    """A page: a title line, a body, and `shown()` called each time it becomes visible.

    A subclass sets only `name`; its title and hint come from PAGES.
    """

    name = ""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        info = page_info(self.name)
        self.title, self.hint = info.title, info.hint
        self.setObjectName(f"page-{self.name}")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(SPACING * 2, SPACING * 2, SPACING * 2, SPACING * 2)
        outer.setSpacing(SPACING)
        header = QHBoxLayout()
        heading = QLabel(self.title)
        heading.setObjectName("pageTitle")
        hint = QLabel(self.hint)
        hint.setObjectName("pageHint")
        header.addWidget(heading)
        header.addSpacing(SPACING)
        header.addWidget(hint, 1, Qt.AlignmentFlag.AlignBottom)
        self.header = header
        outer.addLayout(header)
        self.body = QVBoxLayout()
        self.body.setSpacing(SPACING)
        outer.addLayout(self.body, 1)

    def shown(self) -> None:
        """Called when the page becomes the visible one; refresh what may have changed."""

    def focus_filter(self) -> None:
        """Ctrl+F: put the cursor in the page's search or filter field, where it has one."""
        field = getattr(self, "search", None) or getattr(self, "filter", None)
        if field is not None:
            field.setFocus()
            field.selectAll()
