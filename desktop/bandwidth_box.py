"""The Hardware page's memory-bandwidth box: the stored measurement, measured in the background when missing."""

from __future__ import annotations

import logging
from typing import Any

import shiboken6
from PySide6.QtWidgets import QFormLayout, QGroupBox, QLabel, QPushButton, QWidget

from desktop.jobs import run_job

log = logging.getLogger(__name__)

WHY = ("Generating a token reads the model's weights once, so memory bandwidth sets the ceiling on tokens per "
       "second; the speed predictions (Discover, tokenometer fit) start from it.")


class BandwidthBox(QGroupBox):
    """CPU read/copy bandwidth (a threaded test, a few seconds) and each NVIDIA GPU's peak from NVML."""

    def __init__(self, parent: QWidget | None = None, *, measure_now: bool = True) -> None:
        super().__init__("Memory bandwidth", parent)
        self.setToolTip(WHY)
        form = QFormLayout(self)
        self.cpu = QLabel("…")
        self.gpus = QLabel("")
        self.gpus.setWordWrap(True)
        self.compute = QLabel("…")  # the compute peak measured with the bandwidth: the limit on prompt processing
        self.compute.setWordWrap(True)
        self.compute.setToolTip("Processing a prompt multiplies matrices, so the arithmetic peak sets the ceiling "
                                "on prompt t/s: the CPU's float32 matrix product (measured), a GPU's FP16 tensor "
                                "peak from its data sheet (where its name is known).")
        self.button = QPushButton("Measure again")
        self.button.setToolTip("Run the bandwidth test now (a few seconds, all cores).")
        self.button.clicked.connect(lambda: self.load(refresh=True))
        form.addRow("CPU (RAM)", self.cpu)
        form.addRow("GPUs", self.gpus)
        form.addRow("Compute", self.compute)
        form.addRow(self.button)
        self.bandwidth: Any = None  # models.machine.bandwidth.MachineBandwidth
        self.load(refresh=False, measure=measure_now)

    def load(self, *, refresh: bool, measure: bool = True) -> None:
        """The stored figure, or (`measure`, or `refresh`) a new measurement, off the GUI thread."""
        from models.machine.bandwidth import machine_bandwidth

        self.button.setEnabled(False)
        self.cpu.setText("measuring …" if refresh else "…")
        run_job(lambda: machine_bandwidth(refresh=refresh, measure=measure or refresh), on_done=self._show,
                on_error=self._failed)

    def _show(self, bandwidth: Any) -> None:
        if not shiboken6.isValid(self):
            return  # the page was rebuilt while measuring
        from models.machine.bandwidth import fmt_rate_bytes

        self.bandwidth = bandwidth
        self.button.setEnabled(True)
        cpu = bandwidth.cpu
        self.cpu.setText(f"{fmt_rate_bytes(cpu.read)} read, {fmt_rate_bytes(cpu.copy)} copy "
                         f"({cpu.threads} threads, {cpu.measured_at[:10]})" if cpu else "not measured")
        self.gpus.setText("\n".join(f"GPU {g.index}: {fmt_rate_bytes(g.peak)} peak ({g.memory_clock_mhz} MHz, "
                                    f"{g.bus_width_bits}-bit bus, NVML)" for g in bandwidth.gpus)
                          or "no NVIDIA GPU read")
        if bandwidth.notes:
            self.gpus.setToolTip("\n".join(bandwidth.notes))
        self.compute.setText(bandwidth.compute_summary().replace("; ", "\n"))

    def _failed(self, error: BaseException) -> None:
        if shiboken6.isValid(self):
            self.button.setEnabled(True)
            self.cpu.setText(f"not measured: {error}")
