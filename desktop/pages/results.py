"""Results page: every stored run (sortable, filterable); compare a selection in a table and charts; export, import."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QItemSelection, Qt, QTimer
from PySide6.QtWidgets import (QFileDialog, QFrame, QHBoxLayout, QLabel, QLineEdit, QMessageBox, QPushButton,
                               QScrollArea, QSplitter, QTabWidget, QVBoxLayout, QWidget)

from desktop.compare_view import comparison_charts, comparison_columns
from desktop.context import AppContext
from desktop.jobs import Change, run_job
from desktop.metrics import result_columns
from desktop.pages import SPACING, Page
from desktop.tables import Column, RowTable, sortable, table_view
from models.results.compare import Comparison, compare_runs
from models.results.report_rows import FORMATS
from models.results.store import RunRecord
from models.text import plural

log = logging.getLogger(__name__)

FORMAT_NAMES = {"md": "Markdown", "csv": "CSV", "json": "JSON", "jsonl": "JSON Lines", "sql": "SQL", "html": "HTML"}


def run_columns() -> list[Column[RunRecord]]:
    columns = result_columns(lambda rec: rec.result, with_when=True)
    # The model first: the view keeps its first column on screen while the figures scroll sideways.
    columns.insert(0, columns.pop(1))
    columns.insert(2, Column("Machine", lambda rec: rec.machine_label + (" (imported)" if rec.imported_from else ""),
                             tip="The machine the run was measured on."))
    return columns


WHEN_COLUMN = 1
STORE_POLL_MS = 2000  # how often a shown Results page looks whether another process (the CLI) wrote runs


def store_stamp(path: Path) -> tuple[tuple[int, int], ...]:
    """Size and mtime of the database and its WAL: a commit from any process changes one of them (a stat, no
    SQLite). Missing files stamp as zeros."""
    stamps = []
    for file in (path, path.with_name(path.name + "-wal")):
        try:
            info = file.stat()
            stamps.append((info.st_mtime_ns, info.st_size))
        except OSError:
            stamps.append((0, 0))
    return tuple(stamps)


class ResultsPage(Page):
    name = "results"  # title and hint: desktop.pages.PAGES

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.runs = RowTable(run_columns(), parent=self)
        self.proxy = sortable(self.runs, self)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter by model, test, machine, status or trust (noisy, throttled …) …")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.import_button = QPushButton("Import…")
        self.import_button.setToolTip("Add the runs of a report from another machine (JSON, JSON Lines or CSV).")
        self.import_button.clicked.connect(lambda: self.import_report())
        self.delete_button = QPushButton("Delete")
        self.delete_button.setToolTip("Delete the selected runs from the results database.")
        self.delete_button.clicked.connect(self.delete_selected)
        self.baseline_button = QPushButton("Set as baseline")
        self.baseline_button.setToolTip("Show every other row's change against the selected run's row, in percent.")
        self.baseline_button.clicked.connect(self.set_baseline)
        top = QHBoxLayout()
        top.setSpacing(SPACING)
        top.addWidget(self.filter, 1)
        top.addWidget(self.baseline_button)
        top.addWidget(self.delete_button)
        top.addWidget(self.import_button)
        self.body.addLayout(top)

        self.view = table_view(self.proxy, sortable_view=True, multi=True, freeze_first=True)
        self.view.sortByColumn(WHEN_COLUMN, Qt.SortOrder.DescendingOrder)
        self.view.selectionModel().selectionChanged.connect(self._selection_changed)
        self.view.setMinimumHeight(26 * 4 + 30)  # the header and four rows, however the splitter is dragged
        self.compare_table = RowTable(comparison_columns(Comparison([], [])), parent=self)
        self.compare_view = table_view(self.compare_table, freeze_first=True)
        self.charts_holder = QWidget()
        self.charts_layout = QVBoxLayout(self.charts_holder)
        self.charts_layout.setContentsMargins(0, 0, 0, 0)
        # The charts scroll inside their tab rather than push the window past a small screen.
        self.charts_scroll = QScrollArea()
        self.charts_scroll.setWidgetResizable(True)
        self.charts_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.charts_scroll.setWidget(self.charts_holder)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.charts_scroll, "Charts")
        self.tabs.addTab(self.compare_view, "Comparison")
        self.tabs.setMinimumHeight(160)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.view)
        split.addWidget(self.tabs)
        split.setChildrenCollapsible(False)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        split.setSizes([330, 400])
        self.split = split
        self.body.addWidget(split, 1)

        bottom = QHBoxLayout()
        self.count = QLabel()
        self.count.setObjectName("muted")
        self.status = QLabel()  # what the last action did; the count beside it changes on every reload
        for label in (self.count, self.status):
            label.setWordWrap(True)  # a long error must wrap, not widen the window past the screen
        bottom.addWidget(self.count)
        bottom.addSpacing(SPACING)
        bottom.addWidget(self.status, 1)
        bottom.addWidget(QLabel("Export:"))
        self.export_buttons: dict[str, QPushButton] = {}
        for fmt in FORMATS:
            button = QPushButton(FORMAT_NAMES[fmt])
            button.setToolTip(f"Save the selected runs (or all shown) as a {FORMAT_NAMES[fmt]} report.")
            button.clicked.connect(lambda _checked=False, fmt=fmt: self.export(fmt))
            bottom.addWidget(button)
            self.export_buttons[fmt] = button
        self.body.addLayout(bottom)

        self.baseline: int | None = None
        self._compare_timer = QTimer(self)
        self._compare_timer.setSingleShot(True)
        self._compare_timer.setInterval(150)  # one redraw for a drag-selection, not one per row
        self._compare_timer.timeout.connect(self.update_comparison)
        self._dirty = True
        self._stamp: tuple[tuple[int, int], ...] | None = None
        ctx.results_changed.connect(self._results_changed)
        # Runs the CLI (or another app window) stores change the database file: look now and then while shown.
        self._store_timer = QTimer(self)
        self._store_timer.setInterval(STORE_POLL_MS)
        self._store_timer.timeout.connect(self.check_store)
        self._store_timer.start()

    # -- loading --
    def shown(self) -> None:
        if self._dirty:
            self.reload()
        else:
            self.check_store()

    def check_store(self) -> None:
        """Reload when another process wrote to the results database since the last load (a stat, no query)."""
        if not self.isVisible() or self._stamp is None:
            return
        from models.paths import results_db_path

        if store_stamp(results_db_path()) != self._stamp:
            log.info("the results database changed outside this window: reloading")
            self.reload()

    def _results_changed(self) -> None:
        self._dirty = True
        if self.isVisible():
            self.reload()

    def reload(self) -> None:
        self._dirty = False
        from models.paths import results_db_path

        path = results_db_path()

        def load() -> tuple[list[RunRecord], tuple[tuple[int, int], ...]]:
            with self.ctx.open_store() as store:
                runs = store.list_runs(limit=10_000)
            # Stamped once closed: closing the last connection checkpoints the WAL, which changes the files.
            return runs, store_stamp(path)

        run_job(load, on_done=self._loaded,
                on_error=lambda error: self.count.setText(f"The results could not be read: {error}"))

    def _loaded(self, loaded: tuple[list[RunRecord], tuple[tuple[int, int], ...]]) -> None:
        runs, self._stamp = loaded
        self.runs.set_rows(runs)
        self.view.resizeColumnsToContents()
        self.count.setText(f"{plural(len(runs), 'run')} stored." if runs else
                           "No runs yet: benchmark a model and its results appear here.")
        self.update_comparison()

    # -- selection and comparison --
    def selected(self) -> list[RunRecord]:
        rows = self.view.selectionModel().selectedRows()
        return [self.runs.row(self.proxy.mapToSource(index).row()) for index in rows]

    def shown_runs(self) -> list[RunRecord]:
        return [self.runs.row(self.proxy.mapToSource(self.proxy.index(r, 0)).row())
                for r in range(self.proxy.rowCount())]

    def _selection_changed(self, _new: QItemSelection, _old: QItemSelection) -> None:
        self._compare_timer.start()

    def update_comparison(self) -> None:
        runs = self.selected() or self.shown_runs()[:200]
        baseline = self.baseline if self.baseline in {rec.id for rec in runs} else None
        comparison = compare_runs(runs, baseline=baseline)
        self.comparison = comparison
        self.compare_table.columns = comparison_columns(comparison, settings=self.ctx.settings(), runs=runs)
        self.compare_table.set_rows(comparison.rows)
        self.compare_view.resizeColumnsToContents()
        while self.charts_layout.count():
            taken = self.charts_layout.takeAt(0)
            old = taken.widget() if taken is not None else None
            if old is not None:
                old.deleteLater()
        self.charts = comparison_charts(comparison, runs)  # the old one lingers until deleted: tests read this
        self.charts_layout.addWidget(self.charts)

    def set_baseline(self) -> None:
        chosen = self.selected()
        self.baseline = chosen[0].id if chosen else None
        self.update_comparison()
        self.tabs.setCurrentWidget(self.compare_view)

    # -- export, import, delete --
    def ask_save_path(self, fmt: str) -> Path | None:
        path, _ = QFileDialog.getSaveFileName(self, f"Export a {FORMAT_NAMES[fmt]} report",
                                              str(Path.home() / f"tokenometer-report.{fmt}"), f"*.{fmt}")
        return Path(path) if path else None

    def ask_open_path(self) -> Path | None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a report", str(Path.home()),
                                              "Reports (*.json *.jsonl *.csv)")
        return Path(path) if path else None

    def export(self, fmt: str, path: Path | None = None) -> None:
        runs = self.selected() or self.shown_runs()
        if not runs:
            self.status.setText("Nothing to export: there are no runs.")
            return
        path = path or self.ask_save_path(fmt)
        if path is None:
            return
        from models.results.reports import export_report

        settings = self.ctx.settings()
        baseline = self.baseline if self.baseline in {rec.id for rec in runs} else None  # exported as shown
        self.status.setText(f"Writing {path.name} …")
        def write() -> Path:
            from models.results.measurement_report import report_measurements

            # The load tests and sweeps of the exported runs' model files go with them.
            with self.ctx.open_store() as store:
                measurements = report_measurements(store, runs, everything=False)
            return export_report(runs, path, fmt=fmt, settings=settings, baseline=baseline,
                                 measurements=measurements)

        run_job(write, on_done=lambda written: self.status.setText(f"Saved {plural(len(runs), 'run')} to {written}"))

    def import_report(self, path: Path | None = None) -> None:
        path = path or self.ask_open_path()
        if path is None:
            return
        from models.results.reports import import_report

        def work() -> tuple[int, int]:
            with self.ctx.open_store() as store:
                return import_report(path, store)

        def done(counts: tuple[int, int]) -> None:
            added, skipped = counts
            self.status.setText(f"Imported {plural(added, 'run')} from {path.name}"
                                + (f" ({skipped} were already here)" if skipped else ""))
            if added:
                self.ctx.changes.notify(Change.RESULTS)

        run_job(work, on_done=done)

    def delete_selected(self, *, confirm: bool = True) -> None:
        runs = self.selected()
        if not runs:
            return
        if confirm and QMessageBox.question(self, "Delete runs", f"Delete {plural(len(runs), 'run')} from the results?") \
                != QMessageBox.StandardButton.Yes:
            return
        ids = [rec.id for rec in runs]

        def work() -> int:
            with self.ctx.open_store() as store:
                return store.delete_runs(ids)

        def done(count: int) -> None:
            self.status.setText(f"Deleted {plural(count, 'run')}.")
            self.ctx.changes.notify(Change.RESULTS)

        run_job(work, on_done=done)


PAGE = ResultsPage
