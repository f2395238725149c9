"""The Capacity page's parts: throughput and TTFT charts against people at once, the level, sweep and past-test
tables, and the form's number parsers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCharts import QLineSeries
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QPen
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget
from shiboken6 import isValid

from desktop.charts import ChartView, xy_chart
from desktop.jobs import Change, run_job
from desktop.tables import Column, RowTable, table_view
from models.bench.capacity.serving import LoadSummary
from models.errors import BenchmarkError
from models.results.measurements import Measurement

log = logging.getLogger(__name__)

PER_PERSON = "per person t/s"
TOTAL = "total t/s"


def _slo_name(levels: Sequence[LoadSummary]) -> str:
    slo = levels[0].slo
    return f"SLO {slo.ttft:g} s" if slo.ttft is not None else "SLO"


class CapacityCharts(QWidget):
    """Two charts redrawn as each level arrives: tokens/s per person and in all, and TTFT at the SLO's
    percentile with the SLO's limit as a dashed line."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self.throughput: ChartView | None = None
        self.ttft: ChartView | None = None
        self.show_levels([])

    def show_levels(self, levels: Sequence[LoadSummary]) -> None:
        levels = sorted(levels, key=lambda level: level.concurrency)
        percentile = f"p{levels[0].slo.percentile:g}" if levels else "p90"
        throughput = xy_chart("Tokens/s against people at once",
                              {PER_PERSON: [(lv.concurrency, lv.per_user_tps) for lv in levels],
                               TOTAL: [(lv.concurrency, lv.output_throughput) for lv in levels]},
                              x_title="people at once", y_title="tokens/s", lines=True)
        ttft_points = {f"TTFT {percentile}": [(lv.concurrency, lv.ttft.at(lv.slo.percentile) / 1000) for lv in levels]}
        limit = levels[0].slo.ttft if levels else None
        if limit is not None:
            top = max(lv.concurrency for lv in levels)
            # Across the whole axis (which starts at 0): one level alone still shows where the limit is.
            ttft_points[_slo_name(levels)] = [(0, limit), (top, limit)]
        ttft = xy_chart(f"Time to first token ({percentile}) against people at once", ttft_points,
                        x_title="people at once", y_title="seconds", lines=True)
        if limit is not None:
            for series in ttft.chart().series():
                if series.name().startswith("SLO") and isinstance(series, QLineSeries):
                    pen = QPen(Qt.GlobalColor.red)
                    pen.setStyle(Qt.PenStyle.DashLine)
                    pen.setWidth(2)
                    series.setPen(pen)
                    series.setPointsVisible(False)
        for old in (self.throughput, self.ttft):
            if old is not None:
                self._layout.removeWidget(old)
                old.deleteLater()
        self.throughput, self.ttft = throughput, ttft
        self._layout.addWidget(throughput)
        self._layout.addWidget(ttft)

    def points(self, name: str) -> list[tuple[float, float]]:
        """The points of one named series (what a test or a person checks the chart against)."""
        for view in (self.throughput, self.ttft):
            assert view is not None
            for series in view.chart().series():
                if series.name() == name and isinstance(series, QLineSeries):
                    return [(p.x(), p.y()) for p in series.points()]
        return []


def _ms(value: float) -> str:
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


LEVEL_COLUMNS: list[Column[LoadSummary]] = [
    Column("People", lambda lv: lv.concurrency, tip="Requests served at once (closed loop)", numeric=True),
    Column("SLO", lambda lv: lv.slo_met, text=lambda met: "met" if met else "missed",
           tip="Whether the percentile of TTFT and TPOT were within the limits and no request failed"),
    Column("Each t/s", lambda lv: lv.per_user_tps, text=lambda v: f"{v:.1f}", numeric=True,
           tip="Tokens/s each person got at the SLO's percentile: 1 / TPOT"),
    Column("Total t/s", lambda lv: lv.output_throughput, text=lambda v: f"{v:.1f}", numeric=True,
           tip="Output tokens per second, all people together"),
    Column("TTFT", lambda lv: lv.ttft.at(lv.slo.percentile), text=_ms, numeric=True,
           tip="Time to first token at the SLO's percentile"),
    Column("TPOT", lambda lv: lv.tpot.at(lv.slo.percentile), text=_ms, numeric=True,
           tip="Time per output token after the first, at the SLO's percentile"),
    Column("E2E p50", lambda lv: lv.e2e.median, text=_ms, numeric=True, tip="End-to-end latency, median"),
    Column("Done", lambda lv: lv.completed, numeric=True, tip="Requests finished"),
    Column("Failed", lambda lv: lv.failed, numeric=True, tip="Requests that failed",
           cell_tip=lambda lv: "\n".join(lv.errors)),
    Column("Goodput", lambda lv: lv.goodput, text=lambda v: f"{v:.2f}/s", numeric=True,
           tip="Requests per second that met the SLO (vLLM's goodput)"),
]

# llama-batched-bench's table headers and the jsonl keys the rows carry.
BATCHED_KEYS = (("PP", "pp"), ("TG", "tg"), ("B", "pl"), ("N_KV", "n_kv"), ("T_PP", "t_pp"), ("S_PP", "speed_pp"),
                ("T_TG", "t_tg"), ("S_TG", "speed_tg"), ("T", "t"), ("S", "speed"))
BATCHED_TIPS = {"PP": "prompt tokens per sequence", "TG": "generated tokens per sequence",
                "B": "sequences decoded together", "N_KV": "KV cells the test needs", "T_PP": "prompt time, s",
                "S_PP": "prompt tokens/s", "T_TG": "generation time, s", "S_TG": "generated tokens/s, all sequences",
                "T": "total time, s", "S": "total tokens/s"}


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:.2f}"
    return "" if value is None else str(value)


def _getter(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: row.get(key)


BATCHED_COLUMNS: list[Column[dict[str, Any]]] = [
    Column(title, _getter(key), text=_number, numeric=True, tip=BATCHED_TIPS[title]) for title, key in BATCHED_KEYS]


PAST_COLUMNS: list[Column[Measurement]] = [
    Column("When", lambda m: m.started_at[:16].replace("T", " "), tip="When the test started"),
    Column("Kind", lambda m: m.kind), Column("Model", lambda m: m.model_name),
    Column("Where", lambda m: m.target, tip="llama.cpp here, or the server's URL"),
    Column("Status", lambda m: m.status, cell_tip=lambda m: m.error),
    Column("Answer", lambda m: m.answer, cell_tip=lambda m: m.answer),
]


def ints(text: str, name: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise BenchmarkError(f"{name}: use whole numbers separated by commas, got {text!r}.") from None
    if not values:
        raise BenchmarkError(f"{name}: give at least one number.")
    return values


def number(text: str, name: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise BenchmarkError(f"{name}: expected a number, got {text!r}.") from None


class PastTests(QWidget):
    """The stored load tests and sweeps, newest first: open one (or double-click it), or delete it; the list
    follows the store (a change operation on results reloads it)."""

    opened = Signal(object)  # Measurement

    def __init__(self, ctx: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.table = RowTable(PAST_COLUMNS, parent=self)
        self.view = table_view(self.table)
        self.view.doubleClicked.connect(lambda index: self.opened.emit(self.table.row(index.row())))
        self.open_button = QPushButton("Open")
        self.open_button.clicked.connect(self._open_selected)
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(self._delete_selected)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #d9534f;")
        layout = QVBoxLayout(self)
        layout.addWidget(self.view, 1)
        row = QHBoxLayout()
        row.addWidget(self.open_button)
        row.addWidget(self.delete_button)
        row.addWidget(self.error, 1)
        layout.addLayout(row)
        self.opened.connect(lambda _m: self.error.clear())
        ctx.watch(Change.RESULTS, self.reload, owner=self)
        QTimer.singleShot(150, self.reload)

    def reload(self) -> None:
        def read() -> list[Measurement]:
            from models.results.measurements import list_measurements

            with self.ctx.open_store() as store:
                return [m for m in list_measurements(store, limit=500) if m.kind in ("load", "batched")]

        def done(rows: list[Measurement]) -> None:
            self.error.clear()
            self.table.set_rows(rows)

        run_job(read, on_done=while_alive(self, done), on_error=while_alive(
            self, lambda error: self.error.setText(f"The past tests could not be read: {error}")))

    def selected(self) -> Measurement | None:
        rows = self.view.selectionModel().selectedRows()
        return self.table.row(rows[0].row()) if rows else None

    def _open_selected(self) -> None:
        measurement = self.selected()
        if measurement is None:
            self.error.setText("Select a past test first.")
            return
        self.opened.emit(measurement)

    def _delete_selected(self) -> None:
        measurement = self.selected()
        if measurement is None:
            self.error.setText("Select a past test first.")
            return

        def delete() -> int:
            from models.results.measurements import delete_measurements

            with self.ctx.open_store() as store:
                return delete_measurements(store, [measurement.id])

        self.ctx.change(delete, changes=Change.RESULTS,
                        on_error=while_alive(self, lambda error: self.error.setText(f"Not deleted: {error}")))


def while_alive(widget: QWidget, fn: Callable[..., None]) -> Callable[..., None]:
    """A job's callback that does nothing once the widget is gone (the window closed while the job ran)."""

    def call(*args: Any) -> None:
        if isValid(widget):
            fn(*args)

    return call
