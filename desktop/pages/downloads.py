"""Downloads page: the queue with progress bars, speed, ETA, errors in line; pause, resume, retry, cancel (asking
before a large partial file is deleted), open the folder, benchmark, clear the finished; what a restart can resume."""

from __future__ import annotations

import logging
from typing import Any

from pathlib import Path

from PySide6.QtCore import QItemSelection, Qt, QUrl
from PySide6.QtGui import QColor, QDesktopServices
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMessageBox, QPushButton, QWidget

from desktop.context import AppContext
from desktop.jobs import run_job
from desktop.pages import SPACING, Page
from desktop.tables import Column, ProgressDelegate, RowTable, table_view
from models.units import fmt_bytes, fmt_duration, fmt_speed
from models.hub.download import DownloadState
from models.hub.download_queue import DownloadJob

log = logging.getLogger(__name__)

ACTIVE = (DownloadState.RUNNING, DownloadState.VERIFYING)
FINISHED = (DownloadState.DONE, DownloadState.CANCELLED)
CONFIRM_CANCEL_BYTES = 50 * 1024 * 1024  # losing more than this to a misclick deserves a question
NAMES_IN_BANNER = 3


def _fraction(job: DownloadJob) -> float | None:
    p = job.progress
    if p is None or not p.bytes_total or job.state not in (*ACTIVE, DownloadState.PAUSED):
        return None
    return p.bytes_done / p.bytes_total


def _progress_text(job: DownloadJob) -> str:
    p = job.progress
    if p is None:
        return job.state.value
    total = fmt_bytes(p.bytes_total) if p.bytes_total else "?"
    shard = f" · file {p.file_index + 1} of {p.file_count}" if p.file_count > 1 else ""
    if job.state == DownloadState.DONE:
        return f"done · {total}" + (" · verified" if job.result and job.result.verified else "")
    if job.state == DownloadState.VERIFYING:
        return f"verifying sha256 · {total}"
    if job.state in (DownloadState.RUNNING, DownloadState.PAUSED):
        percent = f"{100 * p.bytes_done / p.bytes_total:.0f} % · " if p.bytes_total else ""
        return f"{job.state.value} · {percent}{fmt_bytes(p.bytes_done)} of {total}{shard}"
    return job.state.value


def _message(job: DownloadJob) -> str:
    if job.error:
        return job.error
    if job.result is not None:
        notes = "; ".join(job.result.notes)
        where = str(job.result.paths[0]) if job.result.paths else ""
        return notes or where
    return job.progress.message if job.progress and job.progress.message not in ("", job.state.value) else ""


DOWNLOAD_COLUMNS: list[Column[DownloadJob]] = [
    Column("Model", lambda j: j.label, tip="Repo and file; a split model counts all its shards."),
    Column("Progress", lambda j: _fraction(j) or 0.0, show=_progress_text, progress=_fraction,
           tip="Bytes received of the whole model. Paused downloads resume where they stopped, even after a restart."),
    Column("Speed", lambda j: j.progress.speed_bps if j.progress and j.state in ACTIVE else 0.0, fmt_speed,
           numeric=True, tip="Average over the last seconds."),
    Column("ETA", lambda j: j.progress.eta_s if j.progress and j.state in ACTIVE else None, fmt_duration,
           numeric=True, tip="Time left at the current speed."),
    Column("Message", _message, tip="Where the file went, or why it failed.",
           color=lambda j: QColor("#d9534f") if j.state == DownloadState.FAILED else None),
]


def queue_summary(jobs: list[DownloadJob]) -> str:
    """One line on the whole queue; "ended" only when nothing is running, waiting or paused."""
    count = {state: sum(1 for j in jobs if j.state == state) for state in DownloadState}
    parts = [f"{count[DownloadState.RUNNING] + count[DownloadState.VERIFYING]} downloading"
             if count[DownloadState.RUNNING] + count[DownloadState.VERIFYING] else "",
             f"{count[DownloadState.QUEUED]} queued" if count[DownloadState.QUEUED] else "",
             f"{count[DownloadState.PAUSED]} paused (Resume continues where it stopped)"
             if count[DownloadState.PAUSED] else "",
             f"{count[DownloadState.FAILED]} failed" if count[DownloadState.FAILED] else ""]
    if not any(parts[:3]):
        return "All downloads have ended" + (f"; {parts[3]} (Retry tries again)." if parts[3] else ".")
    return ", ".join(p for p in parts if p) + "."


def leftover_text(leftover: list[dict[str, Any]]) -> str:
    """The restart banner: which downloads stopped before the end, by name, and how much of each is on disk."""
    def one(info: dict[str, Any]) -> str:
        name = f"{info.get('repo_id')}/{info.get('filename')}"
        size = info.get("size")
        done = int(info.get("bytes_done") or 0)
        return f"{name} ({fmt_bytes(done)} of {fmt_bytes(size)})" if size else f"{name} ({fmt_bytes(done)})"

    names = "; ".join(one(info) for info in leftover[:NAMES_IN_BANNER])
    more = f"; and {len(leftover) - NAMES_IN_BANNER} more" if len(leftover) > NAMES_IN_BANNER else ""
    if len(leftover) == 1:
        return f"1 download stopped before the end last time: {names}."
    return f"{len(leftover)} downloads stopped before the end last time: {names}{more}."


class DownloadsPage(Page):
    name = "downloads"

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.table = RowTable(DOWNLOAD_COLUMNS, parent=self)
        self.view = table_view(self.table)
        self.view.setItemDelegateForColumn(1, ProgressDelegate(self.view))
        self.view.setColumnWidth(0, 380)
        self.view.setColumnWidth(1, 320)
        self.view.setColumnWidth(2, 110)
        self.view.setColumnWidth(3, 90)
        self.view.selectionModel().selectionChanged.connect(self._selection_changed)
        self.view.doubleClicked.connect(lambda _index: self.benchmark_selected())
        self.buttons: dict[str, QPushButton] = {}
        for key, text, tip, slot in (
                ("pause", "Pause", "Stop now and keep the partial file; Resume continues from it.",
                 lambda: self._act("pause")),
                ("resume", "Resume", "Continue a paused download from where it stopped.", lambda: self._act("resume")),
                ("retry", "Retry", "Try a failed or cancelled download again (a failed one continues from its partial "
                                   "file).", self.retry_selected),
                ("cancel", "Cancel", "Stop and delete the partial file (asks first when much is already downloaded).",
                 lambda: self.cancel_selected()),
                ("folder", "Open folder", "Show the downloaded file in the file manager.", self.open_folder),
                ("benchmark", "Benchmark", "Open the Benchmark page with this model ticked (or double-click it).",
                 self.benchmark_selected),
                ("clear", "Clear finished", "Remove the finished and cancelled downloads from this list "
                                            "(the files stay).", self.clear_finished)):
            button = QPushButton(text)
            button.setToolTip(tip)
            button.clicked.connect(slot)
            self.buttons[key] = button
        self.pause_button, self.resume_button, self.cancel_button = (self.buttons["pause"], self.buttons["resume"],
                                                                     self.buttons["cancel"])
        self.status = QLabel("No downloads yet. Find a model on the Discover page (Ctrl+1).")
        self.status.setObjectName("muted")
        self.body.addWidget(self.status)
        row = QHBoxLayout()
        row.setSpacing(SPACING)
        for key in ("pause", "resume", "retry", "cancel"):
            row.addWidget(self.buttons[key])
        row.addSpacing(SPACING)
        for key in ("folder", "benchmark"):
            row.addWidget(self.buttons[key])
        row.addStretch(1)
        row.addWidget(self.buttons["clear"])
        self.body.addLayout(row)
        # Partial files left by a pause, a crash or a quit: offered for resuming, never resumed unasked.
        self.leftover: list[dict[str, Any]] = []
        self.leftover_label = QLabel()
        self.leftover_label.setWordWrap(True)
        self.leftover_label.setTextFormat(Qt.TextFormat.PlainText)  # names from files on disk, never markup
        self.leftover_button = QPushButton("Resume them")
        self.leftover_button.setToolTip("Queue them again; each continues from the bytes already on disk.")
        self.leftover_button.clicked.connect(self.resume_leftovers)
        leftover_row = QHBoxLayout()
        leftover_row.addWidget(self.leftover_label, 1)
        leftover_row.addWidget(self.leftover_button)
        self.leftover_box = QWidget()
        self.leftover_box.setObjectName("notice")
        self.leftover_box.setLayout(leftover_row)
        self.leftover_box.setVisible(False)
        self.body.addWidget(self.leftover_box)
        self.body.addWidget(self.view, 1)
        self.confirm: QMessageBox | None = None  # the open "delete the partial file?" question, if any
        # The most bytes each job has had on disk: a resumed transfer reports 0 for a moment before it finds its
        # partial file, and a cancel in that moment must still ask.
        self._on_disk: dict[str, int] = {}
        ctx.download_bridge.arrived.connect(self._progress)
        if ctx._downloads is not None:  # the queue outlives this page: show what it already holds
            for job in ctx._downloads.jobs():
                self.table.append(job)
            self._update_status()
        self._selection_changed(QItemSelection(), QItemSelection())
        self.find_leftovers()

    def find_leftovers(self) -> None:
        from models.hub.download_queue import pending_downloads

        def done(found: list[dict[str, Any]]) -> None:
            queued = {(j.request.repo_id, f.filename) for j in self.table.rows for f in j.request.files}
            self.leftover = [info for info in found if (info.get("repo_id"), info.get("filename")) not in queued]
            self.leftover_label.setText(leftover_text(self.leftover))
            self.leftover_label.setToolTip("\n".join(f"{info.get('repo_id')}/{info.get('filename')}"
                                                     for info in self.leftover))
            self.leftover_box.setVisible(bool(self.leftover))

        run_job(pending_downloads, on_done=done)

    def resume_leftovers(self) -> None:
        from models.hub.download import DownloadRequest
        from models.hub.repos import RemoteFile

        queue = self.ctx.downloads()
        for info in self.leftover:
            remote = RemoteFile(str(info["filename"]), info.get("size"), info.get("sha256"))
            queue.add(DownloadRequest(str(info["repo_id"]), (remote,), revision=str(info.get("commit") or "main")))
        self.leftover = []
        self.leftover_box.setVisible(False)

    def _progress(self, args: tuple[Any, ...]) -> None:
        job = args[0]
        if job.progress is not None:
            self._on_disk[job.id] = max(self._on_disk.get(job.id, 0), job.progress.bytes_done)
        position = self.table.find(lambda row: row is job)
        if position < 0:
            self.table.append(job)
        else:
            self.table.refresh(position)
        self._update_status()
        if job is self.current():
            self._selection_changed(QItemSelection(), QItemSelection())

    def _update_status(self) -> None:
        self.status.setText(queue_summary(self.table.rows) if self.table.rowCount() else
                            "No downloads yet. Find a model on the Discover page (Ctrl+1).")
        self.buttons["clear"].setEnabled(any(j.state in FINISHED for j in self.table.rows))

    def current(self) -> DownloadJob | None:
        rows = self.view.selectionModel().selectedRows()
        return self.table.row(rows[0].row()) if rows else None

    def _selection_changed(self, _new: QItemSelection, _old: QItemSelection) -> None:
        job = self.current()
        state = job.state if job else None
        done = state == DownloadState.DONE and job is not None and job.result is not None and bool(job.result.paths)
        self.buttons["pause"].setEnabled(state in (DownloadState.QUEUED, DownloadState.RUNNING))
        self.buttons["resume"].setEnabled(state == DownloadState.PAUSED)
        self.buttons["retry"].setEnabled(state in (DownloadState.FAILED, DownloadState.CANCELLED))
        self.buttons["cancel"].setEnabled(state in (DownloadState.QUEUED, DownloadState.RUNNING, DownloadState.PAUSED,
                                                    DownloadState.FAILED))
        self.buttons["folder"].setEnabled(done)
        self.buttons["benchmark"].setEnabled(done)
        self._update_status()

    def _act(self, action: str) -> None:
        job = self.current()
        if job is not None:
            # The queue's calls only set flags under its lock; the transfer thread does the slow part.
            getattr(self.ctx.downloads(), action)(job.id)

    def retry_selected(self) -> None:
        job = self.current()
        if job is None:
            return
        if job.state == DownloadState.FAILED:
            self.ctx.downloads().resume(job.id)  # continues from the partial file
        elif job.state == DownloadState.CANCELLED:
            # A cancelled job's partial file is gone: a fresh job, in place of the old row.
            self.table.remove(self.table.find(lambda row: row is job))
            self.ctx.downloads().add(job.request)

    def cancel_selected(self, *, confirm_over: int = CONFIRM_CANCEL_BYTES) -> None:
        """Cancel the selected download; with more than `confirm_over` bytes on disk, ask first (pausing keeps them)."""
        job = self.current()
        if job is None:
            return
        done = max(self._on_disk.get(job.id, 0), job.progress.bytes_done if job.progress else 0)
        if done <= confirm_over:
            self.ctx.downloads().cancel(job.id)
            return
        box = QMessageBox(QMessageBox.Icon.Question, "Cancel the download?",
                          f"{fmt_bytes(done)} of {job.label} is already downloaded. Cancelling deletes it; pausing "
                          "keeps it, to resume later.", parent=self)
        delete = box.addButton("Cancel and delete", QMessageBox.ButtonRole.DestructiveRole)
        pause = box.addButton("Pause instead", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Keep downloading", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(pause)

        def answered() -> None:
            clicked = box.clickedButton()
            if clicked is delete:
                self.ctx.downloads().cancel(job.id)
            elif clicked is pause:
                self.ctx.downloads().pause(job.id)
            self.confirm = None
            box.deleteLater()

        box.finished.connect(lambda _result: answered())
        self.confirm = box
        box.open()  # window-modal and asynchronous: the transfer goes on while the user reads

    def _done_path(self) -> Path | None:
        job = self.current()
        if job is None or job.state != DownloadState.DONE or job.result is None or not job.result.paths:
            return None
        return job.result.paths[0]

    def open_folder(self) -> None:
        path = self._done_path()
        if path is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(path.parent)))

    def benchmark_selected(self) -> None:
        path = self._done_path()
        if path is not None:
            self.ctx.benchmark([path])

    def clear_finished(self) -> None:
        for position in reversed(range(self.table.rowCount())):
            if self.table.row(position).state in FINISHED:
                self.table.remove(position)
        self._selection_changed(QItemSelection(), QItemSelection())

    def shown(self) -> None:
        self.view.setFocus()


PAGE = DownloadsPage
