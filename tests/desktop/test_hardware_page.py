"""Hardware page: the real probe runs in the background and its facts are shown with units."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGroupBox, QLabel


def test_hardware_page_shows_what_was_detected(window, qtbot) -> None:
    qtbot.keyClick(window, Qt.Key.Key_4, Qt.KeyboardModifier.ControlModifier)
    page = window.pages["hardware"]
    assert not page.refresh_button.isEnabled()  # probing, off the GUI thread
    qtbot.waitUntil(lambda: page.info is not None, timeout=120_000)
    titles = [box.title() for box in page.findChildren(QGroupBox)]
    assert {"Machine", "CPU", "llama.cpp", "Storage for models"} <= set(titles)
    texts = [label.text() for label in page.findChildren(QLabel)]
    assert any(text.endswith("GiB") for text in texts)  # RAM shown with a unit, not as raw bytes
    assert any("CPU" in text for text in texts)  # llama.cpp's backends
    qtbot.mouseClick(page.refresh_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.refresh_button.isEnabled(), timeout=120_000)
