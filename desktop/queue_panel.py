"""The benchmark queue as a table with its actions: cancel the running run, remove one, clear waiting or finished."""

from __future__ import annotations

import logging

from PySide6.QtWidgets import QHBoxLayout, QHeaderView, QLabel, QPushButton, QVBoxLayout, QWidget

from desktop.bench_queue import FAILED, QUEUED, RUNNING, BenchQueue, QueueItem
from desktop.metrics import model_where, rate_text, spread_warning
from desktop.pages import SPACING
from desktop.tables import Column, ProgressDelegate, RowTable, table_view
from models.units import fmt_bytes

log = logging.getLogger(__name__)


def state_text(item: QueueItem) -> str:
    if item.state == RUNNING:
        return f"{item.progress or 'starting'} · {item.fraction:.0%}"
    if item.state == FAILED:
        return f"failed: {item.message}"
    return str(item.state)


def localscore_text(item: QueueItem) -> str:
    """"LocalScore 123" once a run of the LocalScore preset has all its tests; "" for any other run."""
    from models.bench.localscore import localscore, localscore_tests

    if tuple(item.job.tests) != localscore_tests():
        return ""
    score = localscore(item.results)
    return f"LocalScore {score.score:,.0f}" if score.complete else ""


def _summary(item: QueueItem) -> str:
    ok = [r for r in item.results if r.status == "ok"]
    score = localscore_text(item)
    return " · ".join(([score] if score else []) + [f"{r.test} {rate_text(r)}" for r in ok]) or "–"


def _summary_tip(item: QueueItem) -> str:
    warnings = [f"{r.test}: {spread_warning(r)}" for r in item.results if spread_warning(r)]
    return "\n".join(warnings) or "Mean tokens per second of each test."


QUEUE_COLUMNS: list[Column[QueueItem]] = [
    Column("Model", lambda i: i.model_name,
           cell_tip=lambda i: f"{i.job.model_path}\nfrom {model_where(i.job.model_path)}"),
    Column("State", lambda i: i.state, show=state_text, cell_tip=lambda i: i.message or i.settings,
           progress=lambda i: i.fraction if i.state == RUNNING else None),
    Column("Results", lambda i: _summary(i), tip="Mean tokens per second of each test; ⚠ marks a figure with "
           "fewer than 3 repetitions or a spread over 5 % of its mean.", cell_tip=_summary_tip),
    Column("Peak memory", lambda i: i.memory.get("peak", 0) or max((r.mem_peak for r in i.results), default=0),
           lambda v: fmt_bytes(v) if v else "–", numeric=True,  # nothing measured yet is not "0 B"
           tip="Peak resident memory of the worker process (VmHWM)."),
    Column("Settings", lambda i: i.settings),
]


class QueuePanel(QWidget):
    """The queue's rows (one per benchmark run) and the buttons that act on them; follows the app's BenchQueue."""

    def __init__(self, bench: BenchQueue, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bench = bench
        self.table = RowTable(QUEUE_COLUMNS, parent=self)
        self.view = table_view(self.table)
        self.view.setItemDelegateForColumn(1, ProgressDelegate(self.view))
        self.view.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.view.setColumnWidth(1, 220)
        self.view.setColumnWidth(2, 240)
        self.view.setMinimumHeight(26 * 2 + 30)  # header and two rows at least, whatever the splitter does
        self.view.selectionModel().selectionChanged.connect(lambda _new, _old: self.update_buttons())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(self._bar())
        layout.addWidget(self.view, 1)
        bench.added.connect(self._added)
        bench.removed.connect(self._removed)
        bench.changed.connect(self._changed)
        for item in bench.items:
            self._added(item)

    def _bar(self) -> QHBoxLayout:
        bar = QHBoxLayout()
        bar.setSpacing(SPACING // 2)
        title = QLabel("Queue")
        title.setObjectName("muted")
        self.count = QLabel()
        self.count.setObjectName("muted")
        self.cancel_button = QPushButton("Cancel running")
        self.cancel_button.setToolTip("Stop the benchmark that is running now; the queued ones still run after it.")
        self.cancel_button.clicked.connect(lambda: self.bench.cancel())
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Take the selected run off the queue (a running one is cancelled).")
        self.remove_button.clicked.connect(self.remove_selected)
        self.clear_queue_button = QPushButton("Clear queue")
        self.clear_queue_button.setToolTip("Remove every run that has not started yet; the running one goes on.")
        self.clear_queue_button.clicked.connect(lambda: self.bench.clear_queue())
        self.clear_finished_button = QPushButton("Clear finished")
        self.clear_finished_button.setToolTip("Take done, failed and cancelled runs off the list (their results "
                                              "stay on the Results page).")
        self.clear_finished_button.clicked.connect(lambda: self.bench.clear_finished())
        bar.addWidget(title)
        bar.addWidget(self.count, 1)
        for button in (self.remove_button, self.clear_finished_button, self.clear_queue_button, self.cancel_button):
            button.setEnabled(False)
            bar.addWidget(button)
        return bar

    def selected(self) -> QueueItem | None:
        rows = self.view.selectionModel().selectedRows()
        return self.table.row(rows[0].row()) if rows else None

    def position(self, item: QueueItem) -> int:
        return self.table.find(lambda row: row is item)

    def update_buttons(self) -> None:
        items = self.table.rows
        queued = sum(1 for i in items if i.state == QUEUED)
        running = any(i.state == RUNNING for i in items)
        finished = sum(1 for i in items if i.state.finished)
        self.cancel_button.setEnabled(running)
        self.clear_queue_button.setEnabled(queued > 0)
        self.clear_finished_button.setEnabled(finished > 0)
        selected = self.selected()
        self.remove_button.setEnabled(selected is not None)
        self.remove_button.setText("Cancel" if selected is not None and selected.state == RUNNING else "Remove")
        self.count.setText(" · ".join(filter(None, [f"{queued} waiting" if queued else "",
                                                    "1 running" if running else "",
                                                    f"{finished} finished" if finished else ""])))

    def remove_selected(self) -> None:
        """Cancel the selected run if it runs, else take it off the list."""
        item = self.selected()
        if item is None:
            return
        if item.state == RUNNING:
            self.bench.cancel(item)
        else:
            self.bench.remove(item)

    def _added(self, item: QueueItem) -> None:
        position = self.table.append(item)
        # New runs land at the bottom, often below the rows on screen: bring the newest into view.
        self.view.scrollTo(self.table.index(position, 0))
        self.update_buttons()

    def _removed(self, item: QueueItem) -> None:
        position = self.position(item)
        if position >= 0:
            self.table.remove(position)
        self.update_buttons()

    def _changed(self, item: QueueItem) -> None:
        position = self.position(item)
        if position >= 0:
            self.table.refresh(position)
        self.update_buttons()
