"""The application: Qt, the theme that follows the system, the error hook and the main window."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence

from PySide6.QtCore import QEvent, QObject, QSettings, Qt, QThread, QThreadPool, QTimer
from PySide6.QtWidgets import QApplication

from desktop.error_dialog import install_excepthook
from desktop.main_window import MainWindow
from desktop.theme import apply_theme

log = logging.getLogger(__name__)

START_PAGE_ENV = "TOKENOMETER_START_PAGE"  # open this page (discover, ..., settings) instead of the last one
STARTUP_PROBE_ENV = "TOKENOMETER_STARTUP_PROBE"  # print when the window is first exposed, then quit


class _FirstExpose(QObject):
    """Prints the wall-clock time of the window's first expose (startup measurement), then quits."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.Expose and watched.isExposed():  # type: ignore[attr-defined]
            # The platform plugin too: a test checks that the window really opened on X11 (xcb).
            print(f"TOKENOMETER_WINDOW_SHOWN {time.time():.6f} {QApplication.platformName()}", flush=True)
            watched.removeEventFilter(self)
            QTimer.singleShot(0, QApplication.quit)
        return False


def create_application(argv: Sequence[str] | None = None) -> QApplication:
    app = QApplication.instance() or QApplication(list(argv or sys.argv[:1]))
    assert isinstance(app, QApplication)
    app.setOrganizationName("Tokenometer")
    app.setApplicationName("Tokenometer")
    app.setApplicationDisplayName("Tokenometer")
    app.setStyle("Fusion")  # one look on every platform, and a palette that follows light/dark
    # Most jobs wait on the network or the disk, not the CPU: a Hub that does not answer must not hold every
    # pool thread of a two-core machine while the Library or the Settings page wait behind it.
    QThreadPool.globalInstance().setMaxThreadCount(max(8, QThread.idealThreadCount()))
    apply_theme(app)
    app.styleHints().colorSchemeChanged.connect(lambda _scheme: apply_theme(app))
    return app


def _warn_about_a_broken_pyside() -> None:
    from PySide6 import __version__ as pyside_version

    # 6.12.0 loses a reference on each signal emission on Python 3.11 and aborts after a few thousand.
    if pyside_version == "6.12.0" and sys.version_info < (3, 12):
        log.warning("PySide6 6.12.0 crashes on Python %d.%d after many signals (a benchmark sends thousands); "
                    "install another release, e.g. pip install 'PySide6==6.11.3'.", *sys.version_info[:2])


def run_app(argv: Sequence[str] | None = None) -> int:
    """Start the desktop app; returns the exit code."""
    logging.basicConfig(level=logging.INFO if os.environ.get("TOKENOMETER_DEBUG") else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    _warn_about_a_broken_pyside()
    app = create_application(argv)
    install_excepthook()
    window = MainWindow(settings=QSettings(), start_page=os.environ.get(START_PAGE_ENV) or None)
    probe = _FirstExpose(window)
    if os.environ.get(STARTUP_PROBE_ENV):
        window.winId()  # creates the native window so its QWindow can be watched
        window.windowHandle().installEventFilter(probe)
    window.show()
    return app.exec()
