"""The one error dialog: every unhandled error in the app ends here, with details to copy."""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from types import TracebackType

import shiboken6
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (QApplication, QDialog, QDialogButtonBox, QHBoxLayout, QLabel, QPlainTextEdit,
                               QPushButton, QStyle, QVBoxLayout, QWidget)

from models.errors import TokenometerError

log = logging.getLogger(__name__)


def describe(error: BaseException) -> tuple[str, str]:
    """(summary for people, details for a bug report)."""
    if isinstance(error, TokenometerError):
        summary = str(error)
    else:
        summary = f"Something went wrong: {type(error).__name__}: {error}".rstrip(": ")
    details = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return summary, details


class ErrorDialog(QDialog):
    """Shows one or more errors; later errors are appended instead of stacking new windows."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Tokenometer – error")
        self.setObjectName("errorDialog")
        self.resize(640, 360)
        icon = QLabel()
        icon.setPixmap(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning).pixmap(40, 40))
        icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top = QHBoxLayout()
        top.addWidget(icon)
        top.addWidget(self.summary, 1)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.details.setVisible(False)
        self.toggle = QPushButton("Show details")
        self.toggle.setCheckable(True)
        self.toggle.toggled.connect(self._toggle_details)
        self.copy = QPushButton("Copy details")
        self.copy.clicked.connect(self.copy_details)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        buttons.addButton(self.toggle, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(self.copy, QDialogButtonBox.ButtonRole.ActionRole)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.details, 1)
        layout.addWidget(buttons)
        self.count = 0
        self._first_summary = ""

    def add_error(self, summary: str, details: str) -> None:
        self.count += 1
        if self.count == 1:
            self._first_summary = summary
            self.summary.setText(summary)
            self.details.setPlainText(details)
        else:
            # A burst of errors (one per timer tick, say) must not bury the first one.
            self.summary.setText(f"{self.count} errors. The first: {self._first_summary}")
            self.details.appendPlainText(f"\n---- error {self.count} ----\n{details}")

    def _toggle_details(self, shown: bool) -> None:
        self.details.setVisible(shown)
        self.toggle.setText("Hide details" if shown else "Show details")

    def copy_details(self) -> None:
        QGuiApplication.clipboard().setText(f"{self.summary.text()}\n\n{self.details.toPlainText()}")

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.count = 0
        super().closeEvent(event)


class _Reporter(QObject):
    """Carries errors raised on any thread to the GUI thread."""

    error = Signal(str, str)


_reporter: _Reporter | None = None
_dialog: ErrorDialog | None = None


def error_dialog() -> ErrorDialog | None:
    """The dialog if it exists (tests look at it)."""
    return _dialog if _dialog is not None and shiboken6.isValid(_dialog) else None


def _show(summary: str, details: str) -> None:
    global _dialog
    if _dialog is None or not shiboken6.isValid(_dialog):
        # No parent: the dialog must outlive whichever window was active when the first error came.
        _dialog = ErrorDialog()
    _dialog.add_error(summary, details)
    _dialog.show()
    _dialog.raise_()


def report_error(error: BaseException) -> None:
    """Show an error in the dialog; safe to call from any thread."""
    summary, details = describe(error)
    log.error("%s\n%s", summary, details)
    if QApplication.instance() is None:
        return
    if _reporter is None:
        _install_reporter()
    assert _reporter is not None
    _reporter.error.emit(summary, details)


def _install_reporter() -> None:
    global _reporter
    _reporter = _Reporter()
    app = QApplication.instance()
    if app is not None and _reporter.thread() is not app.thread():
        _reporter.moveToThread(app.thread())
    _reporter.error.connect(_show, Qt.ConnectionType.QueuedConnection)


def _excepthook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, tb)
        return
    if error.__traceback__ is None:
        error = error.with_traceback(tb)
    report_error(error)


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        _excepthook(args.exc_type, args.exc_value, args.exc_traceback)


def install_excepthook() -> None:
    """Route every unhandled error (Qt slots, the GUI thread, plain threads) to the one dialog."""
    _install_reporter()
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook
