"""The Hardware page's bandwidth box: the stored figure shown, a new measurement off the GUI thread."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGroupBox

from desktop.bandwidth_box import BandwidthBox
from models.machine.bandwidth import machine_bandwidth


def test_box_shows_the_stored_measurement_then_measures_again(qtbot) -> None:
    stored = machine_bandwidth(buffer_bytes=16 << 20, repeats=2, threads=1, min_seconds=0)
    assert stored.cpu is not None
    box = BandwidthBox()
    qtbot.addWidget(box)
    qtbot.waitUntil(lambda: box.bandwidth is not None, timeout=30_000)
    assert box.cpu.text().startswith(f"{stored.cpu.read / 1e9:.1f} GB/s read") and "(1 threads" in box.cpu.text()
    assert box.gpus.text() == "no NVIDIA GPU read"  # no GPU on the test machine
    assert stored.compute is not None and box.compute.text().startswith(f"CPU {stored.compute.flops / 1e9:.0f} GFLOPS")
    box.bandwidth = None
    qtbot.mouseClick(box.button, Qt.MouseButton.LeftButton)
    assert not box.button.isEnabled() and box.cpu.text() == "measuring …"
    qtbot.waitUntil(lambda: box.bandwidth is not None, timeout=120_000)
    assert box.bandwidth.cpu.threads >= 1 and box.button.isEnabled() and "GB/s read" in box.cpu.text()


def test_nothing_stored_and_no_measuring_says_not_measured(qtbot) -> None:
    box = BandwidthBox(measure_now=False)
    qtbot.addWidget(box)
    qtbot.waitUntil(lambda: box.bandwidth is not None, timeout=30_000)
    assert box.cpu.text() == "not measured"


def test_hardware_page_has_the_box(window, qtbot) -> None:
    qtbot.keyClick(window, Qt.Key.Key_4, Qt.KeyboardModifier.ControlModifier)
    page = window.pages["hardware"]
    qtbot.waitUntil(lambda: page.info is not None, timeout=120_000)
    assert "Memory bandwidth" in [box.title() for box in page.findChildren(QGroupBox)]
    box = page.findChildren(BandwidthBox)[0]
    qtbot.waitUntil(lambda: box.bandwidth is not None, timeout=120_000)
    assert "GB/s read" in box.cpu.text()
