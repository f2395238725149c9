"""The main window: pages, keyboard navigation, remembered size and page, theme, error dialog, jobs."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt

from desktop.pages import PAGES


def test_every_page_opens_from_the_keyboard(window, qtbot, hub) -> None:
    # `hub`: the Discover page searches when first shown, and tests never reach the real Hub.
    for number, info in enumerate(PAGES, start=1):
        qtbot.keyClick(window, Qt.Key(Qt.Key.Key_0 + number), Qt.KeyboardModifier.ControlModifier)
        assert window.current_page() == info.name
        assert window.stack.currentWidget() is window.pages[info.name]
        assert window.pages[info.name].isVisible()


def test_ctrl_f_goes_to_the_filter(window, qtbot) -> None:
    window.show_page("library")
    page = window.pages["library"]
    qtbot.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert page.filter.hasFocus()


def test_pages_are_built_on_first_show_only(window) -> None:
    assert set(window.pages) == {"benchmark"}  # startup builds the page on screen, nothing else
    window.show_page("settings")
    assert set(window.pages) == {"benchmark", "settings"}


def test_window_remembers_size_and_page(qtbot, qsettings_path: Path) -> None:
    from desktop.main_window import MainWindow

    settings = QSettings(str(qsettings_path), QSettings.Format.IniFormat)
    first = MainWindow(settings=settings)
    qtbot.addWidget(first)
    first.show()
    first.resize(760, 720)
    first.show_page("hardware")
    size = (first.width(), first.height())
    first.close()
    second = MainWindow(settings=QSettings(str(qsettings_path), QSettings.Format.IniFormat))
    qtbot.addWidget(second)
    assert second.current_page() == "hardware"
    # The offscreen screen is small, so only the width is sure to come back exactly.
    assert second.width() == size[0] == 760
    assert second.height() == size[1] == 720
    second.close()


def test_dark_theme_follows_the_scheme(qapp, monkeypatch: pytest.MonkeyPatch) -> None:
    from PySide6.QtGui import QPalette

    from desktop.theme import apply_theme

    monkeypatch.setenv("TOKENOMETER_THEME", "dark")
    apply_theme(qapp)
    assert qapp.palette().color(QPalette.ColorRole.Window).lightness() < 80
    monkeypatch.setenv("TOKENOMETER_THEME", "light")
    apply_theme(qapp)
    assert qapp.palette().color(QPalette.ColorRole.Window).lightness() > 180


def test_unhandled_errors_end_in_one_dialog_with_details_to_copy(window, qtbot) -> None:
    from PySide6.QtGui import QGuiApplication

    from desktop import error_dialog

    try:
        raise ValueError("the first thing that broke")
    except ValueError:
        error_dialog._excepthook(*sys.exc_info())  # what sys.excepthook does in the app
    qtbot.waitUntil(lambda: error_dialog.error_dialog() is not None and error_dialog.error_dialog().isVisible())
    dialog = error_dialog.error_dialog()
    assert "the first thing that broke" in dialog.summary.text()
    # An error on a plain thread goes to the same dialog, not a second window.
    thread = threading.Thread(target=lambda: error_dialog.report_error(RuntimeError("from a thread")))
    thread.start()
    thread.join()
    qtbot.waitUntil(lambda: dialog.count == 2)
    assert error_dialog.error_dialog() is dialog
    assert "2 errors" in dialog.summary.text()
    qtbot.mouseClick(dialog.toggle, Qt.MouseButton.LeftButton)
    assert dialog.details.isVisible()
    assert "ValueError" in dialog.details.toPlainText() and "from a thread" in dialog.details.toPlainText()
    qtbot.mouseClick(dialog.copy, Qt.MouseButton.LeftButton)
    assert "the first thing that broke" in QGuiApplication.clipboard().text()
    dialog.close()
    assert dialog.count == 0


def test_a_job_delivers_its_result_on_the_gui_thread(qtbot) -> None:
    from desktop.jobs import run_job

    got: list[tuple[int, bool]] = []
    gui = threading.get_ident()
    run_job(lambda: (threading.get_ident() != gui, 42),
            on_done=lambda value: got.append((value[1], value[0] and threading.get_ident() == gui)))
    qtbot.waitUntil(lambda: bool(got))
    assert got == [(42, True)]


def test_a_failed_job_without_a_handler_reaches_the_error_dialog(window, qtbot) -> None:
    from desktop import error_dialog
    from desktop.jobs import run_job
    from models.errors import HubError

    def fail() -> None:
        raise HubError("The Hub answered 503.")

    run_job(fail)
    qtbot.waitUntil(lambda: error_dialog.error_dialog() is not None and error_dialog.error_dialog().isVisible())
    assert error_dialog.error_dialog().summary.text().endswith("The Hub answered 503.")
    error_dialog.error_dialog().close()


def test_a_stream_turns_callbacks_into_signals(qtbot) -> None:
    from desktop.jobs import Stream

    seen: list[tuple] = []
    done: list[object] = []

    def work(emit) -> str:
        for number in range(5):
            emit("tick", number)
        return "over"

    stream = Stream(work)
    stream.event.connect(seen.append)
    stream.done.connect(done.append)
    stream.start()
    qtbot.waitUntil(lambda: done == ["over"])
    assert seen == [("tick", n) for n in range(5)]


def test_the_installed_pyside_survives_many_signal_emissions() -> None:
    """PySide6 6.12.0 on Python 3.11 drops a reference to True on every emit() and aborts the process after
    enough signals (a benchmark sends thousands); 6.11.3 does not. This catches such a build before users do."""
    import subprocess

    code = ("from PySide6.QtCore import QCoreApplication, QObject, Signal\n"
            "app = QCoreApplication([])\n"
            "class S(QObject):\n    done = Signal(object)\n"
            "s = S(); s.done.connect(lambda value: None)\n"
            "for _ in range(100_000):\n    s.done.emit(5)\n"
            "for _ in range(100_000):\n    app.processEvents()\n"
            "print('survived')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "survived" in proc.stdout, (
        f"this PySide6 build crashes after many signals (exit {proc.returncode}): {proc.stderr[-300:]}; "
        "install PySide6 6.11.3")


def test_the_tokenometer_command_opens_the_window(tmp_path: Path) -> None:
    """`python -m desktop.launch` (the `tokenometer` command without arguments) shows the window: the startup
    probe prints when it is first exposed and quits."""
    import os
    import subprocess

    env = dict(os.environ, TOKENOMETER_STARTUP_PROBE="1", XDG_CONFIG_HOME=str(tmp_path / "config"))
    proc = subprocess.run([sys.executable, "-m", "desktop.launch"], capture_output=True, text=True, timeout=60,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-800:]
    assert proc.stdout.startswith("TOKENOMETER_WINDOW_SHOWN ")
    assert "Traceback" not in proc.stderr
