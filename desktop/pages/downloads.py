"""Downloads page: the queue with progress bars, speed, ETA, pause, resume, cancel and errors in line."""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QItemSelection
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from desktop.context import AppContext
from desktop.jobs import run_job
from desktop.pages import SPACING, Page
from desktop.tables import Column, ProgressDelegate, RowTable, table_view
from desktop.units import fmt_bytes, fmt_duration, fmt_speed
from models.hub.download import DownloadState
from models.hub.download_queue import DownloadJob

log = logging.getLogger(__name__)

ACTIVE = (DownloadState.RUNNING, DownloadState.VERIFYING)


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
        self.pause_button = QPushButton("Pause")
        self.pause_button.setToolTip("Stop now and keep the partial file; Resume continues from it.")
        self.pause_button.clicked.connect(lambda: self._act("pause"))
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue a paused or failed download from where it stopped.")
        self.resume_button.clicked.connect(lambda: self._act("resume"))
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop and delete the partial file.")
        self.cancel_button.clicked.connect(lambda: self._act("cancel"))
        self.status = QLabel("No downloads yet. Find a model on the Discover page (Ctrl+1).")
        self.status.setObjectName("muted")
        row = QHBoxLayout()
        row.setSpacing(SPACING)
        row.addWidget(self.status, 1)
        for button in (self.pause_button, self.resume_button, self.cancel_button):
            row.addWidget(button)
        self.body.addLayout(row)
        # Partial files left by a pause, a crash or a quit: offered for resuming, never resumed unasked.
        self.leftover: list[dict[str, Any]] = []
        self.leftover_label = QLabel()
        self.leftover_button = QPushButton("Resume them")
        self.leftover_button.setToolTip("Queue them again; each continues from the bytes already on disk.")
        self.leftover_button.clicked.connect(self.resume_leftovers)
        leftover_row = QHBoxLayout()
        leftover_row.addWidget(self.leftover_label, 1)
        leftover_row.addWidget(self.leftover_button)
        self.leftover_box = QWidget()
        self.leftover_box.setLayout(leftover_row)
        self.leftover_box.setVisible(False)
        self.body.addWidget(self.leftover_box)
        self.body.addWidget(self.view, 1)
        ctx.download_bridge.event.connect(self._progress)
        if ctx._downloads is not None:  # the queue outlives this page: show what it already holds
            for job in ctx._downloads.jobs():
                self.table.append(job)
        self._selection_changed(QItemSelection(), QItemSelection())
        self.find_leftovers()

    def find_leftovers(self) -> None:
        from models.hub.download_queue import pending_downloads

        def done(found: list[dict[str, Any]]) -> None:
            queued = {(j.request.repo_id, f.filename) for j in self.table.rows for f in j.request.files}
            self.leftover = [info for info in found if (info.get("repo_id"), info.get("filename")) not in queued]
            count = len(self.leftover)
            done_bytes = sum(int(info.get("bytes_done") or 0) for info in self.leftover)
            self.leftover_label.setText(f"{count} download{'s' if count != 1 else ''} stopped before the end last "
                                        f"time ({fmt_bytes(done_bytes)} already on disk).")
            self.leftover_box.setVisible(bool(count))

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
        position = self.table.find(lambda row: row is job)
        if position < 0:
            self.table.append(job)
        else:
            self.table.refresh(position)
        active = sum(1 for j in self.table.rows if j.state in (DownloadState.QUEUED, *ACTIVE))
        self.status.setText(f"{active} downloading or queued." if active else "All downloads have ended.")
        if job is self.current():
            self._selection_changed(QItemSelection(), QItemSelection())

    def current(self) -> DownloadJob | None:
        rows = self.view.selectionModel().selectedRows()
        return self.table.row(rows[0].row()) if rows else None

    def _selection_changed(self, _new: QItemSelection, _old: QItemSelection) -> None:
        job = self.current()
        state = job.state if job else None
        self.pause_button.setEnabled(state in (DownloadState.QUEUED, DownloadState.RUNNING))
        self.resume_button.setEnabled(state in (DownloadState.PAUSED, DownloadState.FAILED))
        self.cancel_button.setEnabled(state in (DownloadState.QUEUED, DownloadState.RUNNING, DownloadState.PAUSED,
                                                DownloadState.FAILED))

    def _act(self, action: str) -> None:
        job = self.current()
        if job is not None:
            # The queue's calls only set flags under its lock; the transfer thread does the slow part.
            getattr(self.ctx.downloads(), action)(job.id)

    def shown(self) -> None:
        self.view.setFocus()


PAGE = DownloadsPage
