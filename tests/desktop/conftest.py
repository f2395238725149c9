"""Desktop fixtures: a main window with its own QSettings file, and Qt noise the offscreen platform makes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# The Hub engineer's loopback Hub and GGUF makers, reused as they are.
from tests.models.hub.conftest import big_gguf, hub, tiny_gguf  # noqa: F401


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The offscreen platform warns that it cannot pass size hints to a window manager it does not have.
    for item in items:
        if "tests/desktop" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.qt_log_ignore(r"This plugin does not support (propagateSizeHints|raise)"))


@pytest.fixture
def qsettings_path(tmp_path: Path) -> Path:
    return tmp_path / "tokenometer-gui.ini"


@pytest.fixture
def window(qtbot, qsettings_path: Path) -> Iterator:
    """The real main window, shown offscreen, with QSettings in a temporary file."""
    from PySide6.QtCore import QSettings

    from desktop.app import create_application
    from desktop.main_window import MainWindow

    create_application()
    win = MainWindow(settings=QSettings(str(qsettings_path), QSettings.Format.IniFormat), start_page="benchmark")
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.ctx.shutdown()
    # Let queued deliveries from background jobs land before the widgets go.
    qtbot.wait(50)
