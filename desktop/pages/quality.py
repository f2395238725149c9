"""The Quality page: perplexity and KL divergence of a model against a reference, and the speed–quality–memory
choice drawn from what was measured on this machine (the Pareto fronts and the one-sentence recommendation)."""

from __future__ import annotations

import logging
from pathlib import Path
from collections.abc import Callable
from typing import Any, Literal

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QLineEdit, QProgressBar, QPushButton, QSpinBox, QSplitter, QTabWidget, QVBoxLayout,
                               QWidget)

from desktop.answers_history import PastAnswers
from desktop.answers_view import AnswersView
from desktop.charts import pareto_chart, unique_short
from desktop.context import AppContext
from desktop.jobs import Change, run_job
from desktop.pages import SPACING, Page
from desktop.tables import Column, RowTable, table_view
from desktop.pages.results import FORMAT_NAMES
from models.results.report_rows import FORMATS
from models.units import fmt_bytes

log = logging.getLogger(__name__)

NO_REFERENCE = "(none: perplexity and bits per byte only)"
EXPORT_FORMATS = tuple(fmt for fmt in FORMATS if fmt != "sql")  # an SQL report holds runs only


def _number(digits: int) -> Any:
    return lambda value: "" if value is None else f"{value:.{digits}f}"


def stored_columns() -> list[Column[Any]]:
    """The table of stored quality results (models.results.quality_records.QualityPoint rows)."""
    return [
        Column("Model", lambda p: p.file, tip="The model file measured"),
        Column("Quant", lambda p: p.quant),
        Column("PPL", lambda p: p.ppl, _number(3), numeric=True, tip="Perplexity per token (same tokenizer only)"),
        Column("Bits/byte", lambda p: p.bits_per_byte, _number(4), numeric=True,
               tip="Bits per UTF-8 byte of the text: comparable across models with different tokenizers"),
        Column("Mean KLD", lambda p: p.kld, _number(5), numeric=True,
               tip="Mean KL divergence from the reference model's token probabilities (0: the reference itself)"),
        Column("Reference", lambda p: p.reference_model, tip="The model the KL divergence is measured against"),
        Column("When", lambda p: p.started_at[:16].replace("T", " ")),
    ]


def point_labels(points: list[Any]) -> list[str]:
    """Legend names: the quants where they tell the files apart (quants of one model), else the files' names."""
    quants = [p.quant for p in points]
    if all(quants) and len(set(quants)) == len(quants):
        return quants
    return unique_short([p.file for p in points])


class _Relay(QObject):
    """Worker events, heard on the runner's thread, re-emitted on the GUI thread."""

    arrived = Signal(object, object)  # BenchJob, BenchEvent


class QualityPage(Page):
    name = "quality"  # title and hint: desktop.pages.PAGES

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self._runner: Any = None
        self._jobs: list[Any] = []
        self._failure = ""
        self._cancelled = False
        self._reads = 0
        self._models: list[tuple[str, Path, str]] = []
        self._charts: list[QWidget] = []
        self.relay = _Relay(self)
        self.relay.arrived.connect(self._heard)
        self.body.addWidget(self._run_box())

        self.stored = RowTable(stored_columns(), parent=self)
        self.stored_view = table_view(self.stored)
        self.chart_area = QWidget()
        self.chart_layout = QHBoxLayout(self.chart_area)
        self.chart_layout.setContentsMargins(0, 0, 0, 0)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.chart_area)
        split.addWidget(self.stored_view)
        split.setSizes([300, 150])
        split.setChildrenCollapsible(False)
        choice_tab = QWidget()
        choice_layout = QVBoxLayout(choice_tab)
        choice_layout.setContentsMargins(0, 0, 0, 0)
        choice_layout.addWidget(split, 1)
        self.answers = AnswersView(busy=self._busy)
        self.tabs = QTabWidget()
        self.tabs.addTab(choice_tab, "The choice")
        self.tabs.addTab(self.answers, "Answers side by side")
        self.past_answers = PastAnswers(ctx)
        self.past_answers.opened.connect(self.open_answers)
        self.tabs.addTab(self.past_answers, "Past answers")
        self.answers.finished.connect(lambda: self.ctx.changes.notify(Change.RESULTS))  # the past list grows
        self.body.addWidget(self.tabs, 1)

        choose = QHBoxLayout()
        choose.addWidget(QLabel("At least"))
        self.min_tg = QDoubleSpinBox()
        self.min_tg.setRange(0.0, 10000.0)
        self.min_tg.setDecimals(1)
        self.min_tg.setSuffix(" t/s")
        from models.results.choice import DEFAULT_MIN_TG

        self.min_tg.setValue(DEFAULT_MIN_TG)
        self.min_tg.setToolTip("The generation speed the recommendation must reach")
        self.min_tg.valueChanged.connect(lambda _v: self.refresh())
        choose.addWidget(self.min_tg)
        self.recommendation = QLabel("")
        self.recommendation.setObjectName("recommendation")
        self.recommendation.setWordWrap(True)
        self.recommendation.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        choose.addWidget(self.recommendation, 1)
        choice_layout.addLayout(choose)
        export = QHBoxLayout()
        self.export_status = QLabel("")
        self.export_status.setWordWrap(True)
        export.addWidget(self.export_status, 1)
        export.addWidget(QLabel("Export:"))
        self.export_buttons: dict[str, QPushButton] = {}
        for fmt in EXPORT_FORMATS:
            button = QPushButton(FORMAT_NAMES[fmt])
            button.setToolTip(f"Save every quality result and answer kept, with the speed runs of the same models, "
                              f"as a {FORMAT_NAMES[fmt]} report")
            button.clicked.connect(lambda _checked=False, fmt=fmt: self.export(fmt))
            export.addWidget(button)
            self.export_buttons[fmt] = button
        choice_layout.addLayout(export)
        self.choice: Any = None
        ctx.watch(Change.RESULTS, self.refresh, owner=self)
        ctx.watch(Change.LIBRARY, self._load_models, owner=self)

    def _run_box(self) -> QGroupBox:
        box = QGroupBox("Measure")
        form = QFormLayout()
        self.model_box, self.reference_box = QComboBox(), QComboBox()
        self.model_box.setToolTip("The model (quant) to measure")
        self.reference_box.setToolTip("A larger quant of the same model (Q8_0, F16): the KL divergence is measured "
                                      "against its token probabilities, computed once and kept")
        self.text_field = QLineEdit("wikitext-2")
        self.text_field.setToolTip("A UTF-8 text file, or wikitext-2 (downloaded once from the Hub)")
        browse = QPushButton("Text file…")
        browse.clicked.connect(self._pick_text)
        text_row = QHBoxLayout()
        text_row.addWidget(self.text_field, 1)
        text_row.addWidget(browse)
        self.ctx_size, self.chunks = QSpinBox(), QSpinBox()
        self.ctx_size.setRange(8, 32768)
        self.ctx_size.setValue(512)
        self.ctx_size.setToolTip("Tokens per chunk (-c); the second half of each chunk is scored")
        self.chunks.setRange(0, 100000)
        self.chunks.setValue(20)
        self.chunks.setSpecialValueText("all")
        self.chunks.setToolTip("How many chunks to evaluate (all: the whole text)")
        sizes = QHBoxLayout()
        sizes.addWidget(QLabel("Chunk"))
        sizes.addWidget(self.ctx_size)
        sizes.addSpacing(SPACING)
        sizes.addWidget(QLabel("Chunks"))
        sizes.addWidget(self.chunks)
        sizes.addStretch(1)
        self.run_button, self.cancel_button = QPushButton("Measure"), QPushButton("Cancel")
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        sizes.addWidget(self.run_button)
        sizes.addWidget(self.cancel_button)
        form.addRow("Model", self.model_box)
        form.addRow("Reference", self.reference_box)
        form.addRow("Text", text_row)
        form.addRow("", sizes)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.status = QLabel("Pick a model and a reference, then Measure.")
        self.status.setWordWrap(True)
        column = QVBoxLayout(box)
        column.addLayout(form)
        column.addWidget(self.progress)
        column.addWidget(self.status)
        return box

    # -- models and text --
    def shown(self) -> None:
        if not self._models:
            self._load_models()
        self.refresh()

    def _load_models(self) -> None:
        run_job(self.ctx.local_models, on_done=self._set_models)

    def _set_models(self, models: list[tuple[str, Path, str]]) -> None:
        self._models = models
        for box, first in ((self.model_box, None), (self.reference_box, NO_REFERENCE)):
            picked = box.currentData()
            box.clear()
            if first is not None:
                box.addItem(first, None)
            for name, path, tip in models:
                box.addItem(name, str(path))  # a str, so findData matches by value
                box.setItemData(box.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
            if picked is not None and box.findData(picked) >= 0:
                box.setCurrentIndex(box.findData(picked))
        self.answers.set_models([(name, str(path)) for name, path, _tip in models])

    def add_model(self, path: Path) -> None:
        """Offer a model file in both lists (a file outside the library)."""
        for box in (self.model_box, self.reference_box):
            if box.findData(str(path)) < 0:
                box.addItem(path.name, str(path))
                box.setItemData(box.count() - 1, str(path), Qt.ItemDataRole.ToolTipRole)
        self.answers.set_models([(path.name, str(path))])

    def _busy(self) -> str:
        """Why a run may not start now: two workers at once would share the cores and skew both."""
        if self.ctx.bench.running is not None:
            return "A benchmark is running; start when it has finished."
        if self._runner is not None or self.answers._runner is not None:
            return "A quality run or an answer is under way; start when it has finished."
        return ""

    def open_answers(self, group: Any) -> None:
        """Show a kept group of answers side by side again (from the Past answers list)."""
        if self.answers.show_past(group):
            self.tabs.setCurrentWidget(self.answers)
        else:
            self.past_answers.message.setText(self.answers.status.text())

    def export(self, fmt: str, path: Path | None = None) -> None:
        """A report of the quality results and answers kept, with the runs of the same model files (the Results
        page's export: models.results.reports.export_report)."""
        if path is None:
            chosen, _ = QFileDialog.getSaveFileName(self, f"Export a {FORMAT_NAMES[fmt]} report",
                                                    str(Path.home() / f"tokenometer-quality.{fmt}"), f"*.{fmt}")
            if not chosen:
                return
            path = Path(chosen)
        target, settings = path, self.ctx.settings()
        self.export_status.setText(f"Writing {target.name} …")

        def write() -> str:
            from models.results.quality_report import export_quality_report

            with self.ctx.open_store() as store:
                return export_quality_report(store, target, fmt=fmt, settings=settings)

        run_job(write, on_done=self._exported, on_error=self._not_exported)  # bound: dropped once the page is gone

    def _exported(self, message: str) -> None:
        self.export_status.setText(message)

    def _not_exported(self, error: BaseException) -> None:
        self.export_status.setText(f"Not exported: {error}")

    def _pick_text(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "A text to measure on", "", "Text (*.txt *.raw);;All files (*)")
        if path:
            self.text_field.setText(path)

    # -- a run --
    def start(self) -> None:
        """Measure the picked model (the reference first when its log-probabilities are not kept yet)."""
        from models.bench.runner import BenchRunner, check_job
        from models.results.quality_records import quality_jobs

        model, reference = self.model_box.currentData(), self.reference_box.currentData()
        text = self.text_field.text().strip() or "wikitext-2"
        if model is None:
            self.status.setText("Pick a model to measure first.")
            return
        if reference is not None and Path(reference) == Path(model):
            self.status.setText("The reference is the model itself: pick a larger quant of it, or no reference.")
            return
        if self._busy():
            self.status.setText(self._busy())
            return
        jobs = quality_jobs(Path(model), reference=Path(reference) if reference else None, text=text,
                            n_ctx=self.ctx_size.value(), n_chunks=self.chunks.value())
        for job in jobs:
            computing = job.quality.reference and not Path(job.quality.reference).exists()
            problem = None if computing else check_job(job)
            if problem:
                self.status.setText(problem)
                return
        runner = BenchRunner(on_event=self.relay.arrived.emit)
        # The runner forgets a cancel when its run returns: the page keeps its own flag for the jobs left.
        self._runner, self._jobs, self._failure, self._cancelled = runner, jobs, "", False
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.status.setText(f"Starting: {len(jobs)} model{'s' if len(jobs) > 1 else ''} to measure…")

        def work() -> None:
            from models.results.quality_records import open_quality_recorder

            for job in jobs:
                recorder = open_quality_recorder(job)

                def on_event(job_: Any, event: Any, record: Any = recorder) -> None:
                    record(job_, event)  # kept in the store from the runner's thread (SQLite is per thread)
                    self.relay.arrived.emit(job_, event)

                runner.on_event = on_event
                runner.run([job])
                if self._cancelled or self._failure:
                    return

        run_job(work, on_done=lambda _none: self._ended(None), on_error=self._ended)

    def cancel(self) -> None:
        if self._runner is not None:
            self.status.setText("Cancelling…")
            self._cancelled = True
            self._runner.cancel()

    def _heard(self, job: Any, event: Any) -> None:
        data = event.data
        step = self._jobs.index(job) if job in self._jobs else 0
        role = "reference" if job.quality.save_reference else "model"
        if event.kind == "quality_chunk":
            done = (step + data.get("chunk", 0) / max(1, data.get("of", 1))) / len(self._jobs)
            self.progress.setValue(int(100 * done))
            kld = f", KLD {data['kld']:.5f}" if data.get("kld") is not None else ""
            self.status.setText(f"{job.model_path.name} ({role}): chunk {data.get('chunk')}/{data.get('of')}, "
                                f"PPL {data.get('ppl', 0):.4f} ± {data.get('ppl_err', 0):.4f}{kld}")
        elif event.kind == "progress" and data.get("phase") == "load":
            self.status.setText(f"Loading {job.model_path.name} ({role})…")
        elif event.kind == "quality":
            result = data.get("result", {})
            kld = f", mean KLD {result['kld']['kld_mean']:.5f}" if result.get("kld") else ""
            self.status.setText(f"{job.model_path.name}: PPL {result.get('ppl', 0):.4f}, "
                                f"{result.get('bits_per_byte', 0):.4f} bits/byte{kld}")
        elif event.kind == "failure":
            self._failure = str(data.get("message", "The measurement failed."))

    def _ended(self, error: BaseException | None) -> None:
        cancelled, self._runner = self._cancelled, None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if error is not None or self._failure:
            self.status.setText(f"Failed: {self._failure or error}")
        elif cancelled:
            self.status.setText("Cancelled.")
        else:
            self.progress.setValue(100)
            self.status.setText(f"Done. {self.status.text()}")
        self.ctx.changes.notify(Change.RESULTS)

    # -- the choice --
    def refresh(self) -> None:
        """Read the stored quality results and the choice off the GUI thread, then draw them."""
        min_tg = self.min_tg.value()
        # Reads may overlap (the speed spun quickly): only the newest one's answer is shown.
        self._reads += 1
        generation = self._reads

        def read() -> tuple[list[Any], Any]:
            from models.machine.hardware import machine_fingerprint
            from models.results.choice import build_choice
            from models.results.quality_records import stored_quality

            machine = machine_fingerprint()
            with self.ctx.open_store() as store:
                return (stored_quality(store, machine=machine),
                        build_choice(store, machine=machine, memory_bytes=int(machine.get("ram_total") or 0),
                                     min_tg=min_tg))

        # A bound method, not a lambda: Qt drops the delivery when the page is gone before the read ends.
        run_job(lambda: (generation, *read()), on_done=self._show)

    def _show(self, read: tuple[int, list[Any], Any]) -> None:
        generation, stored, choice = read
        if generation != self._reads:
            return
        self.stored.set_rows(stored)
        self.stored_view.resizeColumnsToContents()
        self.choice = choice
        self.recommendation.setText(choice.recommendation)
        for chart in self._charts:
            self.chart_layout.removeWidget(chart)
            chart.deleteLater()
        self._charts = []
        from models.results.choice import pareto_front

        names = dict(zip((p.file for p in choice.points), point_labels(choice.points)))
        y_title = f"{choice.metric_label} (lower is better)"
        axes: tuple[tuple[Literal["tg", "mem_peak"], str, Callable[[Any], float]], ...] = (
            ("tg", "generation t/s (higher is better)", lambda p: p.tg),
            ("mem_peak", "peak memory MiB (lower is better)", lambda p: p.mem_peak / 2**20))
        for against, x_title, x in axes:
            front = [(x(p), p.quality) for p in pareto_front(choice.points, against=against)]
            chart = pareto_chart(f"{choice.metric_label} against {'speed' if against == 'tg' else 'memory'}",
                                 {names[p.file]: (x(p), p.quality) for p in choice.points}, front,
                                 x_title=x_title, y_title=y_title)
            chart.setObjectName(f"pareto-{against}")
            tips = [f"{p.file}: {p.quality:.4g}, {p.tg:.1f} t/s, {fmt_bytes(p.mem_peak)}" for p in choice.points]
            chart.setToolTip("\n".join(tips))
            self.chart_layout.addWidget(chart)
            self._charts.append(chart)


PAGE = QualityPage
