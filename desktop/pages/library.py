"""Library page (placeholder until its core lands)."""

from __future__ import annotations

import logging

from PySide6.QtWidgets import QWidget

from desktop.context import NOT_AVAILABLE, AppContext
from desktop.pages import PAGES, Page, unavailable

log = logging.getLogger(__name__)
_INFO = next(info for info in PAGES if info.name == "library")


class LibraryPage(Page):
    name, title, hint = _INFO.name, _INFO.title, _INFO.hint

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.body.addWidget(unavailable(NOT_AVAILABLE), 1)


PAGE = LibraryPage
