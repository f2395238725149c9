"""A choice among a fixed set of values, in place of free text: one value, or several ticked for a sweep.

`ChoiceList` speaks QLineEdit's language (text(), setText(), textEdited) so a form can swap one in for a line edit:
the text is the chosen value, or the ticked values as a comma list ("on, off"), which the benchmark sweeps.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QComboBox, QLineEdit, QWidget

log = logging.getLogger(__name__)


def split_values(text: str) -> list[str]:
    """The values of a comma list, trimmed, empty parts dropped."""
    return [part.strip() for part in text.split(",") if part.strip()]


class ChoiceList(QComboBox):
    """A combo box over `values` (each shown as `labels[value]` when given).

    With `multiple`, every value has a tick box and the popup stays open while values are ticked; the text is the
    ticked values, in the set's order, joined by ", ". At least one value stays ticked.
    """

    textEdited = Signal(str)  # noqa: N815 (QLineEdit's name): only for changes made by the user

    def __init__(self, values: Sequence[str], *, multiple: bool = False, labels: dict[str, str] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        if not values:
            raise ValueError("a choice needs at least one value")
        self.values = list(values)
        self.multiple = multiple
        self._labels = labels or {}
        model = QStandardItemModel(self)
        for value in self.values:
            item = QStandardItem(self._labels.get(value, value))
            item.setData(value, Qt.ItemDataRole.UserRole)
            item.setToolTip(value)
            if multiple:
                item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable)
                item.setData(Qt.CheckState.Unchecked, Qt.ItemDataRole.CheckStateRole)
            model.appendRow(item)
        self.setModel(model)
        if multiple:
            # The closed box shows the comma list in a read-only line edit; a click anywhere on it opens the list.
            self.setEditable(True)
            line = self._line()
            line.setReadOnly(True)
            line.installEventFilter(self)
            self.view().viewport().installEventFilter(self)
            self._set_checked([self.values[0]])
        else:
            self.activated.connect(lambda _index: self.textEdited.emit(self.text()))

    # -- QLineEdit's interface --
    def text(self) -> str:
        if not self.multiple:
            return str(self.currentData(Qt.ItemDataRole.UserRole))
        return ", ".join(self.checked())

    def setText(self, text: str) -> None:  # noqa: N802 (QLineEdit's name)
        """Choose the values of `text` (one value, or a comma list where several are allowed); ValueError names
        any value that is not one of the choices."""
        if not self.multiple and text.strip() in self.values:  # a value may itself hold a comma
            self.setCurrentIndex(self.values.index(text.strip()))
            return
        wanted = split_values(text)
        unknown = [value for value in wanted if value not in self.values]
        if unknown or not wanted or (len(wanted) > 1 and not self.multiple):
            allowed = ", ".join(self.values)
            what = f"{', '.join(unknown)} is not one of" if unknown else "choose one of" if wanted else "choose from"
            raise ValueError(f"{what} {allowed}" + ("" if self.multiple else " (one value)"))
        if self.multiple:
            self._set_checked(wanted)
        else:
            self.setCurrentIndex(self.values.index(wanted[0]))

    def _line(self) -> QLineEdit:
        line = self.lineEdit()
        assert line is not None, "a multiple choice is an editable combo box"
        return line

    # -- ticking --
    def checked(self) -> list[str]:
        model = self.model()
        assert isinstance(model, QStandardItemModel)
        return [self.values[row] for row in range(model.rowCount())
                if model.item(row).data(Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.Checked]

    def toggle(self, row: int) -> None:
        """Tick or untick one value, as a click in the list does; the last ticked value cannot be unticked."""
        chosen = self.checked()
        value = self.values[row]
        if value in chosen:
            if len(chosen) == 1:
                return  # a sweep over nothing is no benchmark
            chosen.remove(value)
        else:
            chosen.append(value)
        self._set_checked(chosen)
        self.textEdited.emit(self.text())

    def _set_checked(self, chosen: Sequence[str]) -> None:
        model = self.model()
        assert isinstance(model, QStandardItemModel)
        for row, value in enumerate(self.values):
            state = Qt.CheckState.Checked if value in chosen else Qt.CheckState.Unchecked
            model.item(row).setData(state, Qt.ItemDataRole.CheckStateRole)
        self._line().setText(self.text())

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if not self.multiple:
            return False
        if watched is self._line() and event.type() == QEvent.Type.MouseButtonRelease:
            self.showPopup()
            return True
        if watched is self.view().viewport() and event.type() == QEvent.Type.MouseButtonRelease:
            index = self.view().indexAt(event.position().toPoint())  # type: ignore[attr-defined]
            if index.isValid():
                self.toggle(index.row())
            return True  # the popup stays open for the next tick
        return False

    def hidePopup(self) -> None:  # noqa: N802 (Qt's name)
        super().hidePopup()
        if self.multiple:
            # QComboBox writes the current item's text into the line edit on close; the list is what counts.
            self._line().setText(self.text())
