"""Past answers on the Quality page: every prompt answered side by side and kept in the results store (one group
of answers per prompt run), newest first; open one to see its answers side by side again, or delete it."""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMessageBox, QPushButton, QVBoxLayout, QWidget

from desktop.capacity_view import while_alive
from desktop.jobs import Change, run_job
from desktop.tables import Column, RowTable, table_view

log = logging.getLogger(__name__)

LIMIT = 500  # groups listed; older ones stay in the store and in the reports


def _one_line(text: str, width: int = 80) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


PAST_ANSWER_COLUMNS: list[Column[Any]] = [
    Column("When", lambda g: g.started_at[:16].replace("T", " "), tip="When the first model started answering"),
    Column("Prompt", lambda g: _one_line(g.prompt), cell_tip=lambda g: g.prompt),
    Column("Models", lambda g: ", ".join(g.models), tip="The models that answered, in the order they ran"),
    Column("Seed", lambda g: g.sampling.get("seed"), numeric=True, tip="The sampling seed"),
    Column("Status", lambda g: g.status, tip="ok when every model answered"),
]


class PastAnswers(QWidget):
    """The kept answer groups (models.results.answers_records.AnswerGroup): Open (or double-click) emits
    `opened`, Delete asks first; the list follows the store."""

    opened = Signal(object)  # AnswerGroup

    def __init__(self, ctx: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.table = RowTable(PAST_ANSWER_COLUMNS, parent=self)
        self.view = table_view(self.table)
        self.view.doubleClicked.connect(lambda index: self.opened.emit(self.table.row(index.row())))
        self.open_button, self.delete_button = QPushButton("Open"), QPushButton("Delete…")
        self.open_button.setToolTip("Show the selected prompt's answers side by side again")
        self.delete_button.setToolTip("Delete the selected prompt's answers from the results store")
        self.open_button.clicked.connect(self._open_selected)
        self.delete_button.clicked.connect(self.delete_selected)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.confirm: QMessageBox | None = None  # the open "delete these answers?" question, if any
        layout = QVBoxLayout(self)
        layout.addWidget(self.view, 1)
        row = QHBoxLayout()
        row.addWidget(self.open_button)
        row.addWidget(self.delete_button)
        row.addWidget(self.message, 1)
        layout.addLayout(row)
        ctx.watch(Change.RESULTS, self.reload, owner=self)
        QTimer.singleShot(150, self.reload)

    def reload(self) -> None:
        def read() -> list[Any]:
            from models.results.answers_records import stored_answer_groups

            with self.ctx.open_store() as store:
                return stored_answer_groups(store, limit=LIMIT)

        def done(groups: list[Any]) -> None:
            picked = self.selected()
            self.table.set_rows(groups)
            self.view.resizeColumnsToContents()
            if picked is not None:  # the selection survives a reload (another page saved something)
                again = next((i for i, g in enumerate(groups) if g.group == picked.group), -1)
                if again >= 0:
                    self.view.selectRow(again)

        run_job(read, on_done=while_alive(self, done), on_error=while_alive(
            self, lambda error: self.message.setText(f"The past answers could not be read: {error}")))

    def selected(self) -> Any | None:
        model = self.view.selectionModel()
        rows = model.selectedRows() if model is not None else []
        return self.table.row(rows[0].row()) if rows else None

    def _open_selected(self) -> None:
        group = self.selected()
        if group is None:
            self.message.setText("Select a past prompt first.")
            return
        self.message.clear()
        self.opened.emit(group)

    def delete_selected(self) -> None:
        """Ask, then delete every answer of the selected prompt run (window-modal, not blocking the loop)."""
        group = self.selected()
        if group is None:
            self.message.setText("Select a past prompt first.")
            return
        n = len(group.answers)
        box = QMessageBox(QMessageBox.Icon.Question, "Delete these answers?",
                          f"Delete the {n} answer{'s' if n != 1 else ''} to “{_one_line(group.prompt, 60)}” "
                          f"({', '.join(group.models)}) from the results store? This cannot be undone.", parent=self)
        delete = box.addButton("Delete", QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton("Keep", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(keep)

        def answered() -> None:
            if box.clickedButton() is delete:
                self._delete(group)
            self.confirm = None
            box.deleteLater()

        box.finished.connect(lambda _result: answered())
        self.confirm = box
        box.open()

    def _delete(self, group: Any) -> None:
        def delete() -> int:
            from models.results.answers_records import delete_answer_group

            with self.ctx.open_store() as store:
                return delete_answer_group(store, group.group)

        self.ctx.change(delete, changes=Change.RESULTS,
                        on_done=while_alive(self, lambda count: self.message.setText(
                            f"Deleted {count} answer{'s' if count != 1 else ''}.")),
                        on_error=while_alive(self, lambda error: self.message.setText(f"Not deleted: {error}")))
