"""The main window: a sidebar of pages (Ctrl+1..7), pages built on first show, a status line."""

from __future__ import annotations

import importlib
import logging
import time

from PySide6.QtCore import QSettings, QSize, Qt
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QMainWindow, QStackedWidget,
                               QVBoxLayout, QWidget)

from desktop.bench_queue import QueueItem
from desktop.context import AppContext
from desktop.pages import PAGES, Page

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    """Owns the pages and the shared context; remembers its size and page."""

    def __init__(self, *, settings: QSettings | None = None, start_page: str | None = None) -> None:
        super().__init__()
        self.setWindowTitle("Tokenometer")
        self.settings = settings or QSettings()
        self.ctx = AppContext(self)
        self.pages: dict[str, Page] = {}
        self.sidebar = QListWidget()
        self.sidebar.setObjectName("sidebar")
        self.sidebar.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.stack = QStackedWidget()
        for number, info in enumerate(PAGES, start=1):
            item = QListWidgetItem(info.title)
            item.setToolTip(f"{info.hint}  (Ctrl+{number})")
            item.setSizeHint(QSize(160, 38))
            self.sidebar.addItem(item)
            self.stack.addWidget(QWidget())  # placeholder until the page is first shown
            shortcut = QShortcut(QKeySequence(f"Ctrl+{number}"), self)
            shortcut.activated.connect(lambda row=number - 1: self.sidebar.setCurrentRow(row))
        find = QShortcut(QKeySequence.StandardKey.Find, self)
        find.activated.connect(lambda: self.page(self.current_page()).focus_filter())
        brand = QLabel("Tokenometer")
        brand.setObjectName("brand")
        side = QVBoxLayout()
        side.setContentsMargins(0, 0, 0, 0)
        side.setSpacing(0)
        side.addWidget(brand)
        side.addWidget(self.sidebar, 1)
        side_panel = QWidget()
        side_panel.setObjectName("sidePanel")
        side_panel.setLayout(side)
        side_panel.setFixedWidth(180)
        central = QWidget()
        row = QHBoxLayout(central)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(side_panel)
        row.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self.activity = QLabel()
        self.statusBar().addPermanentWidget(self.activity)
        self.sidebar.currentRowChanged.connect(self._show_row)
        self.ctx.open_page.connect(self.show_page)
        self.ctx.bench.changed.connect(self._bench_activity)
        self._restore(start_page)

    # -- pages --
    def page(self, name: str) -> Page:
        """The page called `name`, built now if it has not been shown yet."""
        if name not in self.pages:
            row = [info.name for info in PAGES].index(name)
            started = time.perf_counter()
            module = importlib.import_module(f"desktop.pages.{name}")
            page: Page = module.PAGE(self.ctx)
            old = self.stack.widget(row)
            self.stack.insertWidget(row, page)
            if old is not None:  # the placeholder the page replaces
                self.stack.removeWidget(old)
                old.deleteLater()
            self.pages[name] = page
            log.debug("built page %s in %.0f ms", name, 1000 * (time.perf_counter() - started))
        return self.pages[name]

    def show_page(self, name: str) -> None:
        self.sidebar.setCurrentRow([info.name for info in PAGES].index(name))

    def current_page(self) -> str:
        return PAGES[max(0, self.sidebar.currentRow())].name

    def _show_row(self, row: int) -> None:
        if row < 0:
            return
        page = self.page(PAGES[row].name)
        self.stack.setCurrentIndex(row)
        page.shown()

    # -- status line --
    def _bench_activity(self, item: QueueItem) -> None:
        running = self.ctx.bench.running
        if running is None:
            self.activity.setText("")
            return
        waiting = self.ctx.bench.pending() - 1
        more = f" (+{waiting} queued)" if waiting > 0 else ""
        self.activity.setText(f"Benchmarking {running.model_name}: {running.fraction:.0%}{more}")

    # -- remembering --
    def _restore(self, start_page: str | None) -> None:
        geometry = self.settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 800)
        names = [info.name for info in PAGES]
        wanted = start_page or str(self.settings.value("window/page", "benchmark"))
        self.sidebar.setCurrentRow(names.index(wanted) if wanted in names else names.index("benchmark"))

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt's name)
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/page", self.current_page())
        self.ctx.shutdown()
        super().closeEvent(event)
