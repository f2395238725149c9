"""Tables: QAbstractTableModel over lists of the core's dataclasses, with units and metric tooltips."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QAbstractItemView, QHeaderView, QStyle, QStyledItemDelegate, QStyleOptionViewItem,
                               QTableView)

log = logging.getLogger(__name__)

T = TypeVar("T")

SORT_ROLE = Qt.ItemDataRole.UserRole
ROW_ROLE = Qt.ItemDataRole.UserRole + 1
PROGRESS_ROLE = Qt.ItemDataRole.UserRole + 2  # 0..1 or None: drawn as a bar by ProgressDelegate

AnyIndex = QModelIndex | QPersistentModelIndex


@dataclass(frozen=True)
class Column(Generic[T]):
    """One column: a title, how to get the raw value (for sorting), how to show it, and what it means."""

    title: str
    value: Callable[[T], Any]
    text: Callable[[Any], str] = lambda value: "" if value is None else str(value)
    tip: str = ""  # header tooltip: what the figure means, its unit, how it was measured
    numeric: bool = False
    cell_tip: Callable[[T], str] | None = None
    color: Callable[[T], QColor | None] | None = None
    progress: Callable[[T], float | None] | None = None
    show: Callable[[T], str] | None = None  # text from the whole row, when one value is not enough


class RowTable(QAbstractTableModel, Generic[T]):
    """A list of rows (dataclass instances) shown through columns; the GUI never edits rows in place."""

    def __init__(self, columns: Sequence[Column[T]], rows: Iterable[T] = (), parent: Any = None) -> None:
        super().__init__(parent)
        self.columns = list(columns)
        self._rows: list[T] = list(rows)

    # -- Qt's interface --
    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.columns)

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not (0 <= index.row() < len(self._rows)):
            return None
        row, column = self._rows[index.row()], self.columns[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return column.show(row) if column.show is not None else column.text(column.value(row))
        if role == SORT_ROLE:
            value = column.value(row)
            # Sorting compares like with like: missing numbers sort first, not as text.
            if column.numeric:
                return float(value) if isinstance(value, (int, float)) else -1.0
            return "" if value is None else str(value).lower()
        if role == Qt.ItemDataRole.ToolTipRole:
            if column.cell_tip is not None:
                return column.cell_tip(row) or None
            return column.tip or None
        if role == Qt.ItemDataRole.TextAlignmentRole:
            horizontal = Qt.AlignmentFlag.AlignRight if column.numeric else Qt.AlignmentFlag.AlignLeft
            return int(horizontal | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and column.color is not None:
            return column.color(row)
        if role == PROGRESS_ROLE and column.progress is not None:
            return column.progress(row)
        if role == ROW_ROLE:
            return row
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal or not (0 <= section < len(self.columns)):
            return None
        column = self.columns[section]
        if role == Qt.ItemDataRole.DisplayRole:
            return column.title
        if role == Qt.ItemDataRole.ToolTipRole:
            return column.tip or None
        if role == Qt.ItemDataRole.TextAlignmentRole:
            horizontal = Qt.AlignmentFlag.AlignRight if column.numeric else Qt.AlignmentFlag.AlignLeft
            return int(horizontal | Qt.AlignmentFlag.AlignVCenter)
        return None

    # -- the pages' interface --
    @property
    def rows(self) -> list[T]:
        return list(self._rows)

    def row(self, index: int) -> T:
        return self._rows[index]

    def set_rows(self, rows: Iterable[T]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self.endResetModel()

    def append(self, row: T) -> int:
        position = len(self._rows)
        self.beginInsertRows(QModelIndex(), position, position)
        self._rows.append(row)
        self.endInsertRows()
        return position

    def replace(self, position: int, row: T) -> None:
        """Swap one row for its newer version (a progress update) and repaint only that row."""
        self._rows[position] = row
        self.dataChanged.emit(self.index(position, 0), self.index(position, len(self.columns) - 1))

    def refresh(self, position: int) -> None:
        """Repaint one row whose object changed in place."""
        self.dataChanged.emit(self.index(position, 0), self.index(position, len(self.columns) - 1))

    def remove(self, position: int) -> None:
        self.beginRemoveRows(QModelIndex(), position, position)
        del self._rows[position]
        self.endRemoveRows()

    def find(self, predicate: Callable[[T], bool]) -> int:
        for position, row in enumerate(self._rows):
            if predicate(row):
                return position
        return -1


def sortable(table: RowTable[Any], parent: Any = None) -> QSortFilterProxyModel:
    """A proxy that sorts on raw values and filters on every column's text, case-insensitively."""
    proxy = QSortFilterProxyModel(parent)
    proxy.setSourceModel(table)
    proxy.setSortRole(SORT_ROLE)
    proxy.setFilterKeyColumn(-1)
    proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
    return proxy


class ProgressDelegate(QStyledItemDelegate):
    """Draws PROGRESS_ROLE (0..1) as a slim filled bar behind the cell's text (one look in every style)."""

    def paint(self, painter: Any, option: QStyleOptionViewItem, index: AnyIndex) -> None:
        fraction = index.data(PROGRESS_ROLE)
        if fraction is None:
            super().paint(painter, option, index)
            return
        from PySide6.QtCore import QRectF
        from PySide6.QtGui import QPalette

        palette = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        painter.save()
        painter.fillRect(option.rect, palette.color(QPalette.ColorRole.Highlight) if selected
                         else palette.color(QPalette.ColorRole.Base))
        groove = QRectF(option.rect.adjusted(3, 4, -3, -4))
        painter.setRenderHint(painter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        track = QColor(palette.color(QPalette.ColorRole.Mid))
        track.setAlpha(70)
        painter.setBrush(track)
        painter.drawRoundedRect(groove, 3, 3)
        fill = QColor(palette.color(QPalette.ColorRole.Highlight).lighter(135) if selected
                      else palette.color(QPalette.ColorRole.Highlight))
        fill.setAlpha(150)
        done = QRectF(groove)
        done.setWidth(groove.width() * max(0.0, min(1.0, float(fraction))))
        painter.setBrush(fill)
        painter.drawRoundedRect(done, 3, 3)
        painter.setPen(palette.color(QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text))
        painter.drawText(groove.adjusted(6, 0, -6, 0), int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft),
                         str(index.data(Qt.ItemDataRole.DisplayRole) or ""))
        painter.restore()


def table_view(model: Any, *, sortable_view: bool = False, multi: bool = False, freeze_first: bool = False) -> Any:
    """A QTableView set up the same way on every page: whole rows, one line each, long paths cut in the middle;
    with `freeze_first`, the first column stays on screen when the table scrolls sideways."""
    view = FrozenColumnView(model) if freeze_first else QTableView()
    if not freeze_first:
        view.setModel(model)
    view.setModel(model)
    view.setSortingEnabled(sortable_view)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection if multi
                          else QAbstractItemView.SelectionMode.SingleSelection)
    view.setWordWrap(False)
    view.setTextElideMode(Qt.TextElideMode.ElideMiddle)
    view.setAlternatingRowColors(True)
    view.verticalHeader().hide()
    view.verticalHeader().setDefaultSectionSize(26)
    view.horizontalHeader().setStretchLastSection(True)
    view.horizontalHeader().setHighlightSections(False)
    if isinstance(view, FrozenColumnView):
        frozen = view.frozen
        frozen.setSelectionBehavior(view.selectionBehavior())
        frozen.setSelectionMode(view.selectionMode())
        frozen.setWordWrap(False)
        frozen.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        frozen.setAlternatingRowColors(True)
        frozen.verticalHeader().setDefaultSectionSize(26)
        frozen.horizontalHeader().setHighlightSections(False)
    return view


class FrozenColumnView(QTableView):
    """A table view whose first column stays in place while the others scroll sideways (Qt's frozen-column
    example): a second view over the same model shows only that column, on top, sharing the selection."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.setModel(model)
        self.frozen = QTableView(self)
        self.frozen.setObjectName("frozenColumn")
        self.frozen.setModel(model)
        self.frozen.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.frozen.verticalHeader().hide()
        self.frozen.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.frozen.setSelectionModel(self.selectionModel())
        self.frozen.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.frozen.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.frozen.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.viewport().stackUnder(self.frozen)
        self.frozen.setStyleSheet("QTableView#frozenColumn { border: none; border-right: 1px solid palette(mid); }")
        self.horizontalHeader().sectionResized.connect(self._section_resized)
        self.verticalHeader().sectionResized.connect(
            lambda index, _old, size: self.frozen.setRowHeight(index, size))
        self.frozen.verticalScrollBar().valueChanged.connect(self.verticalScrollBar().setValue)
        self.verticalScrollBar().valueChanged.connect(self.frozen.verticalScrollBar().setValue)
        # A click on the frozen header sorts like a click on the real one.
        self.frozen.horizontalHeader().sectionClicked.connect(
            lambda section: self.horizontalHeader().sectionClicked.emit(section))
        self.horizontalHeader().sortIndicatorChanged.connect(
            lambda section, order: self.frozen.horizontalHeader().setSortIndicator(section, order))
        model.modelReset.connect(self._columns_changed)
        model.columnsInserted.connect(self._columns_changed)
        model.columnsRemoved.connect(self._columns_changed)
        self._columns_changed()
        self.frozen.show()

    def setSortingEnabled(self, enable: bool) -> None:  # noqa: N802 (Qt's name)
        super().setSortingEnabled(enable)
        self.frozen.horizontalHeader().setSortIndicatorShown(enable)

    def _columns_changed(self) -> None:
        for column in range(self.model().columnCount()):
            self.frozen.setColumnHidden(column, column != 0)
        self.frozen.setColumnWidth(0, self.columnWidth(0))
        self._place()

    def _section_resized(self, index: int, _old: int, size: int) -> None:
        if index == 0:
            self.frozen.setColumnWidth(0, size)
            # The header may still answer the old width here (resizeColumnsToContents after a reset): use `size`,
            # or a narrower column leaves the overlay covering the next one.
            self._place(size)

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._place()

    def _place(self, width: int | None = None) -> None:
        frame = self.frameWidth()
        self.frozen.setGeometry(self.verticalHeader().width() + frame, frame,
                                self.columnWidth(0) if width is None else width,
                                self.viewport().height() + self.horizontalHeader().height())

    def scrollTo(self, index: Any, hint: Any = QAbstractItemView.ScrollHint.EnsureVisible) -> None:  # noqa: N802
        # Column 0 is always on screen: scroll to its row without scrolling sideways back to the start.
        across = self.horizontalScrollBar().value()
        super().scrollTo(index, hint)
        if index.column() == 0:
            self.horizontalScrollBar().setValue(across)
