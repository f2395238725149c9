"""Hardware page: what was detected (CPU, memory, GPUs, disk), the llama.cpp build and its backends, and the remote
devices (RPC servers) with their memory."""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLayout, QPushButton, QScrollArea,
                               QVBoxLayout, QWidget)

from desktop.bandwidth_box import BandwidthBox
from desktop.context import AppContext
from desktop.pages import SPACING, Page
from desktop.remote_devices import RemoteDevicesBox
from models.units import fmt_bytes

log = logging.getLogger(__name__)

class HardwarePage(Page):
    name = "hardware"

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.status = QLabel("Looking at this machine …")
        self.status.setObjectName("muted")
        self.refresh_button = QPushButton("Detect again")
        self.refresh_button.setToolTip("Probe the hardware again (in a separate process).")
        self.refresh_button.clicked.connect(lambda: self._probe(refresh=True))
        row = QHBoxLayout()
        row.addWidget(self.status, 1)
        row.addWidget(self.refresh_button)
        self.body.addLayout(row)
        self.content = QWidget()
        outer = QVBoxLayout(self.content)
        outer.setSpacing(SPACING)
        outer.setContentsMargins(0, 0, 0, 0)
        self.columns = QHBoxLayout()
        self.columns.setSpacing(SPACING)
        outer.addLayout(self.columns)
        # Under the detected facts and outside them: detecting again must not drop the servers' checks.
        self.remote = RemoteDevicesBox(ctx)
        outer.addWidget(self.remote)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(self.content)
        self.body.addWidget(scroll, 1)
        ctx.hardware_ready.connect(self.show_info)
        ctx.hardware_failed.connect(self._failed)
        self.info: Any = None
        self._probe(refresh=False)

    def _probe(self, *, refresh: bool) -> None:
        self.status.setText("Looking at this machine …")
        self.refresh_button.setEnabled(False)
        self.ctx.request_hardware(refresh=refresh)

    def _failed(self, error: BaseException) -> None:
        self.refresh_button.setEnabled(True)
        self.status.setText(f"Detection failed: {error}")

    def _clear(self, layout: QLayout | None = None) -> None:
        """Delete the shown facts; the columns are layouts, so their boxes are deleted one level down."""
        layout = layout if layout is not None else self.columns
        while layout.count():
            item = layout.takeAt(0)
            if item is None:
                continue
            widget, inner = item.widget(), item.layout()
            if widget is not None:
                widget.deleteLater()
            elif inner is not None:
                self._clear(inner)

    def show_info(self, info: Any) -> None:
        """Lay out a models.machine.hardware.HardwareInfo: machine, CPU and disks left; llama.cpp and GPUs right."""
        self.info = info
        self.refresh_button.setEnabled(True)
        self.status.setText("Detected on this machine; the fit badges and memory estimates use these figures.")
        self._clear()
        left, right = QVBoxLayout(), QVBoxLayout()
        left.setSpacing(SPACING)
        right.setSpacing(SPACING)
        left.addWidget(self._group("Machine", [
            ("Operating system", info.os), ("Python", info.python),
            ("RAM", f"{fmt_bytes(info.ram_available)} free of {fmt_bytes(info.ram_total)}"),
            ("Swap", f"{fmt_bytes(info.swap_free)} free of {fmt_bytes(info.swap_total)}" if info.swap_total
             else "none")]))
        cpu = info.cpu
        caches = ", ".join(f"{name} {fmt_bytes(size)}" for name, size in cpu.caches.items())
        left.addWidget(self._group("CPU", [
            ("Model", cpu.model), ("Architecture", cpu.arch),
            ("Cores", f"{cpu.physical_cores} physical, {cpu.logical_cores} logical"),
            ("SIMD", ", ".join(cpu.flags) or "–"), ("Caches", caches or "–")]))
        left.addWidget(BandwidthBox())  # measured once in the background, then stored
        left.addWidget(self._group("Storage for models", [
            (disk.path, f"{fmt_bytes(disk.free)} free of {fmt_bytes(disk.total)}") for disk in info.disks]
            or [("", "No model folder could be measured.")]))
        build = info.llama
        if build is not None:
            pairs: list[tuple[str, Any]] = [
                ("llama-cpp-python", build.llama_cpp_python_version or "–"), ("llama.cpp commit", build.commit or "–"),
                ("ggml", build.ggml_version or "–"), ("Backends", ", ".join(build.backends) or "–"),
                ("GPU offload", "yes" if build.supports_gpu_offload else "no (this build runs on the CPU)")]
            for device in build.devices:
                memory = device.get("memory_total") or 0
                pairs.append((f"Device {device.get('index', '')}",
                               f"{device.get('name', '?')} ({device.get('type', '?')})"
                               + (f", {fmt_bytes(memory)}" if memory else "")))
            if build.error:
                pairs.append(("Problem", build.error))
            right.addWidget(self._group("llama.cpp", pairs, wide=build.system_info))
        if info.gpus:
            for gpu in info.gpus:
                right.addWidget(self._group(f"GPU {gpu.index}: {gpu.name}", [
                    ("Vendor", gpu.vendor), ("Memory", f"{fmt_bytes(gpu.memory_free)} free of "
                                                       f"{fmt_bytes(gpu.memory_total)}"
                                             + (" (shared with the CPU)" if gpu.unified_memory else "")),
                    ("Driver", gpu.driver or "–"),
                    ("Power limit", f"{gpu.power_limit_w:.0f} W" if gpu.power_limit_w else "–"),
                    ("Seen through", gpu.source or "–")]))
        else:
            right.addWidget(self._group("GPUs", [("", "No GPU detected: llama.cpp runs on the CPU.")]))
        if info.notes:
            right.addWidget(self._group("Notes", [("", note) for note in info.notes]))
        for column in (left, right):
            column.addStretch(1)
            self.columns.addLayout(column, 1)

    def _group(self, title: str, pairs: list[tuple[str, Any]], *, wide: str = "") -> QGroupBox:
        box = QGroupBox(title)
        form = QFormLayout(box)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft)
        form.setHorizontalSpacing(SPACING * 2)
        for name, value in pairs:
            label = QLabel(str(value))
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            if name:
                form.addRow(name, label)
            else:
                form.addRow(label)
        if wide:
            text = QLabel(wide)
            text.setObjectName("muted")
            text.setWordWrap(True)
            text.setToolTip("llama.cpp's own system info: the CPU features this build uses.")
            form.addRow(text)
        return box


PAGE = HardwarePage
