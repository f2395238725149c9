"""Capacity page: how many people can this machine serve: a load test (or a batched sweep), live, cancellable, kept."""

from __future__ import annotations

import logging
import threading
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                               QPushButton, QSplitter, QTabWidget, QVBoxLayout, QWidget)

from desktop.bench_queue import CANCELLED, DONE, FAILED, QUEUED, QueueItem
from desktop.capacity_view import BATCHED_COLUMNS, LEVEL_COLUMNS, CapacityCharts, PastTests, ints, number, while_alive
from desktop.context import AppContext
from desktop.jobs import Bridge, Change, run_job
from desktop.pages import SPACING, Page
from desktop.tables import RowTable, table_view
from models.bench.events import Batched, LoadLevel
from models.bench.capacity.profile import PROFILES
from models.bench.capacity.serving import LoadSummary, Slo, capacity_sentence
from models.errors import BenchmarkError
from models.results.measurements import Measurement

log = logging.getLogger(__name__)

LOAD, BATCHED = "Load test", "Batched sweep (llama-batched-bench)"
HERE, ENDPOINT = "llama.cpp here", "An OpenAI-compatible server"
class CapacityPage(Page):
    name = "capacity"  # title and hint: desktop.pages.PAGES

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self._item: QueueItem | None = None  # the load test or sweep this page put on the benchmark queue
        self._stop: threading.Event | None = None  # set to stop a load test against a server
        self.levels: list[LoadSummary] = []
        self._model_name = ""
        self._where = "this machine"
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self._form())
        split.addWidget(self._figures())
        split.setSizes([330, 700])
        split.setChildrenCollapsible(False)
        self.body.addWidget(split, 1)
        self.bridge = Bridge(self)  # a load test against a server reports from its own thread
        self.bridge.arrived.connect(self._endpoint_event)
        ctx.bench.measured.connect(self._measured)
        ctx.bench.changed.connect(self._changed)
        ctx.bench.finished.connect(self._finished)
        ctx.watch(Change.LIBRARY, self.reload_models, owner=self)
        self._mode_changed()
        QTimer.singleShot(100, self.reload_models)

    # -- building --
    def _form(self) -> QWidget:
        box = QGroupBox("Test")
        form = QFormLayout(box)
        self.form = form

        def line(text: str, tip: str) -> QLineEdit:
            field = QLineEdit(text)
            field.setToolTip(tip)
            return field

        self.mode = QComboBox()
        self.mode.addItems([LOAD, BATCHED])
        self.mode.setToolTip("A load test: people at once with latency targets. A batched sweep: llama-batched-bench's "
                             "table of prompt and generation speed with B sequences decoded together.")
        self.target = QComboBox()
        self.target.addItems([HERE, ENDPOINT])
        self.model = QComboBox()
        self.model.setToolTip("A model from the library (the starter model first)")
        self.url = line("", "The server's base URL, e.g. http://127.0.0.1:8080 (llama-server, Ollama, LM Studio, vLLM)")
        self.url.setPlaceholderText("http://127.0.0.1:8080")
        self.api = QComboBox()
        self.api.addItems(["completions", "chat"])
        self.server_model = line("", "The model name to send to the server (empty: the server's own)")
        self.profile = QComboBox()
        self.profile.setEditable(True)  # or the path of a CSV/JSONL file of prompt_tokens,output_tokens
        self.profile.setToolTip("Request lengths: a built-in profile, or type the path of a CSV or JSONL file with "
                                "prompt_tokens and output_tokens")
        for profile in PROFILES.values():
            self.profile.addItem(profile.name)
            self.profile.setItemData(self.profile.count() - 1, profile.description, Qt.ItemDataRole.ToolTipRole)
        self.concurrency = line("1, 2, 4, 8", "People at once, one load level each; the sweep stops at the first "
                                              "level that misses the SLO")
        self.requests = line("0", "Requests per level (0: four per person, at least 8)")
        self.slo_ttft = line("2", "Time to first token limit, seconds")
        self.slo_tpot = line("100", "Time per output token limit, milliseconds (100 ms = 10 t/s each)")
        self.percentile = line("90", "The percentile the limits apply to")
        self.all_levels = QCheckBox("Run every level")
        self.all_levels.setToolTip("Go on after a level misses the SLO (by default the sweep stops there: a heavier "
                                   "load will not meet it either)")
        from models.bench.spec import default_threads

        self.threads = line(str(default_threads()), "CPU threads for llama.cpp")
        self.npp = line("128", "Prompt tokens per sequence (-npp). Comma list.")
        self.ntg = line("128", "Generated tokens per sequence (-ntg). Comma list.")
        self.npl = line("1, 2, 4, 8", "Sequences decoded together (-npl). Comma list.")
        for label, widget in (("Method", self.mode), ("Where", self.target), ("Model", self.model),
                              ("Server URL", self.url), ("API", self.api), ("Server model", self.server_model),
                              ("Profile", self.profile), ("People at once", self.concurrency),
                              ("Requests per level", self.requests), ("SLO: TTFT (s)", self.slo_ttft),
                              ("SLO: TPOT (ms)", self.slo_tpot), ("SLO percentile", self.percentile),
                              ("", self.all_levels),
                              ("Prompt tokens", self.npp), ("Generated tokens", self.ntg),
                              ("Sequences (B)", self.npl), ("Threads", self.threads)):
            form.addRow(label, widget)
        self.mode.currentTextChanged.connect(self._mode_changed)
        self.target.currentTextChanged.connect(self._mode_changed)
        self.run_button = QPushButton("Run")
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        form.addRow(buttons)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.error = QLabel()
        self.error.setObjectName("formError")
        self.error.setStyleSheet("color: #d9534f;")
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow(self.status)
        form.addRow(self.error)
        return box

    def _figures(self) -> QWidget:
        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(SPACING // 2)
        self.answer = QLabel("Run a load test to see how many people this machine serves.")
        self.answer.setObjectName("capacityAnswer")
        self.answer.setWordWrap(True)
        self.answer.setStyleSheet("font-weight: 600;")
        self.answer.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.cost = QLabel()
        self.cost.setWordWrap(True)
        self.charts = CapacityCharts()
        self.charts.setMinimumHeight(220)
        self.level_table = RowTable(LEVEL_COLUMNS, parent=self)
        self.batched_table: RowTable[dict[str, Any]] = RowTable(BATCHED_COLUMNS, parent=self)
        self.past_tests = PastTests(self.ctx, self)
        self.past_tests.opened.connect(self.open_measurement)
        # The panel's parts, as the page's own: what tests and the screenshot script drive.
        self.past, self.past_view, self.past_error = self.past_tests.table, self.past_tests.view, self.past_tests.error
        self.open_button, self.delete_button = self.past_tests.open_button, self.past_tests.delete_button
        self.tabs = QTabWidget()
        self.tabs.addTab(table_view(self.level_table), "Levels")
        self.tabs.addTab(table_view(self.batched_table), "Batched rows")
        self.tabs.addTab(self.past_tests, "Past tests")
        layout.addWidget(self.answer)
        layout.addWidget(self.cost)
        layout.addWidget(self.charts, 3)
        layout.addWidget(self.tabs, 2)
        return panel

    def _mode_changed(self, _text: str = "") -> None:
        load, here = self.mode.currentText() == LOAD, self.target.currentText() == HERE
        if not load and not here:
            self.target.setCurrentText(HERE)  # a batched sweep runs in llama.cpp only
            return
        shown = {self.target: load, self.model: here, self.url: not here, self.api: not here,
                 self.server_model: not here, self.profile: load, self.concurrency: load, self.requests: load,
                 self.slo_ttft: load, self.slo_tpot: load, self.percentile: load, self.all_levels: load,
                 self.npp: not load, self.ntg: not load, self.npl: not load, self.threads: here}
        for widget, visible in shown.items():
            self.form.setRowVisible(widget, visible)

    # -- models and past tests --
    def reload_models(self) -> None:
        run_job(self.ctx.local_models, on_done=while_alive(self, self._set_models), on_error=while_alive(
            self, lambda error: self.error.setText(f"The library could not be read: {error}")))

    def _set_models(self, entries: list[tuple[str, Path, str]]) -> None:
        current = self.model.currentData()
        self.model.clear()
        for name, path, tip in entries:
            self.model.addItem(name, path)
            self.model.setItemData(self.model.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        if current is not None and self.model.findData(current) >= 0:
            self.model.setCurrentIndex(self.model.findData(current))

    def reload_past(self) -> None:
        self.past_tests.reload()

    def open_measurement(self, measurement: Measurement) -> None:
        """Show a stored load test or sweep as it was: its levels or rows, answer and cost."""
        from models.results.capacity import load_levels, measurement_answer, measurement_cost, started

        self.past_error.clear()
        if measurement.kind == "batched":
            self.batched_table.set_rows([row for row in measurement.data.get("rows", []) if not row.get("skipped")])
            self.tabs.setCurrentIndex(1)
            self.status.setText(f"A batched sweep of {measurement.model_name} from {started(measurement)}.")
            return
        self.levels = load_levels(measurement)
        self.level_table.set_rows(self.levels)
        self.charts.show_levels(self.levels)
        self.answer.setText(measurement_answer(measurement))
        self._show_cost(measurement_cost(measurement, self.ctx.settings()) if measurement.target == "llama.cpp"
                        else None, remote=measurement.target != "llama.cpp")
        self.status.setText(f"The load test of {measurement.model_name} from {started(measurement)} "
                            f"({measurement.status}).")

    # -- running --
    @property
    def running(self) -> bool:
        return self._stop is not None or (self._item is not None and not self._item.state.finished)

    def load_plan(self) -> Any:
        from models.bench.capacity.sweep import LoadPlan

        percentile = number(self.percentile.text(), "SLO percentile")
        plan = LoadPlan(profile=self.profile.currentText().strip(),
                        concurrency=ints(self.concurrency.text(), "People at once"),
                        requests=int(number(self.requests.text() or "0", "Requests per level")),
                        stop_early=not self.all_levels.isChecked(),
                        slo=Slo(ttft=number(self.slo_ttft.text(), "SLO TTFT"),
                                tpot=number(self.slo_tpot.text(), "SLO TPOT") / 1000.0, percentile=percentile))
        problem = plan.problem()
        if problem:
            raise BenchmarkError(problem)
        return plan

    def _job(self, plan: Any) -> Any:
        from models.bench.capacity.batched import BatchedPlan
        from models.bench.spec import BenchJob, BenchParams, check_job

        path = self.model.currentData()
        if path is None:
            raise BenchmarkError("Pick a model first (the library has none yet).")
        threads = int(number(self.threads.text(), "Threads"))
        if isinstance(plan, BatchedPlan):
            job = BenchJob(model_path=Path(path), params=BenchParams(n_threads=threads), tests=(), repetitions=1,
                           batched=plan)
        else:
            job = BenchJob(model_path=Path(path), params=BenchParams(n_threads=threads), tests=(), repetitions=1,
                           load=plan)
        problem = check_job(job)
        if problem:
            raise BenchmarkError(problem)
        return job

    def run(self) -> None:
        """Start the test from the form; a bad field is said under the buttons and nothing starts."""
        from models.bench.capacity.batched import BatchedPlan

        self.error.clear()
        if self.running:
            self.error.setText("A test is running: cancel it first, or wait for it to end.")
            return
        try:
            if self.mode.currentText() == BATCHED:
                plan: Any = BatchedPlan(n_prompt=ints(self.npp.text(), "Prompt tokens"),
                                        n_gen=ints(self.ntg.text(), "Generated tokens"),
                                        n_parallel=ints(self.npl.text(), "Sequences"))
                problem = plan.problem()
                if problem:
                    raise BenchmarkError(problem)
            else:
                plan = self.load_plan()
            if self.target.currentText() == ENDPOINT and isinstance(plan, BatchedPlan) is False:
                self._run_endpoint(plan)
            else:
                job = self._job(plan)
                self._start_display(job.model_path.name, "this machine")  # named as the store keeps it
                self._item = self.ctx.bench.enqueue([job])[0]
                self._show_running()
        except BenchmarkError as error:
            self.error.setText(str(error))

    def _start_display(self, model: str, where: str) -> None:
        self.levels, self._model_name, self._where = [], model, where
        self.level_table.set_rows([])
        self.batched_table.set_rows([])
        self.charts.show_levels([])
        self.answer.setText("Measuring …")
        self.cost.clear()
        self.tabs.setCurrentIndex(1 if self.mode.currentText() == BATCHED else 0)

    def _show_running(self) -> None:
        self.run_button.setEnabled(not self.running)
        self.cancel_button.setEnabled(self.running)

    def cancel(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self.status.setText("Cancelling: the requests in flight are ended …")
        elif self._item is not None and not self._item.state.finished:
            self.ctx.bench.cancel(self._item)
            self.status.setText("Cancelling …")

    def _run_endpoint(self, plan: Any) -> None:
        from models.bench.capacity.endpoint import Endpoint

        url = self.url.text().strip()
        if not url.startswith(("http://", "https://")):
            raise BenchmarkError(f"The server URL must start with http:// or https://, got {url!r}.")
        api: Any = self.api.currentText()  # "completions" or "chat": the combo holds only those
        endpoint = Endpoint(url, api=api, model=self.server_model.text().strip())
        stop = self._stop = threading.Event()
        self._start_display(endpoint.model or "the server's model", url)
        self.status.setText(f"Sending requests to {endpoint.path} …")
        bridge, name = self.bridge, self._model_name
        from desktop.capacity_runs import endpoint_sweep

        work = partial(endpoint_sweep, plan, endpoint, stop=stop, report=bridge, name=name)
        run_job(work, on_done=while_alive(self, lambda _levels: self._endpoint_ended(None)),
                on_error=while_alive(self, self._endpoint_ended))
        self._show_running()

    def _endpoint_event(self, args: tuple[Any, ...]) -> None:
        kind, payload = args
        if kind == "progress":
            self.status.setText(str(payload))
        elif kind == "level":
            self._add_level(payload)
        elif kind == "unsaved":
            self.error.setText(str(payload))

    def _endpoint_ended(self, error: BaseException | None) -> None:
        cancelled = self._stop is not None and self._stop.is_set()
        self._stop = None
        self._show_running()
        if error is not None:
            self.error.setText(f"The load test failed: {error}")
            self.status.setText("Failed.")
        else:
            self.status.setText("Cancelled." if cancelled else "Done.")
            self._check_nothing_succeeded()
        self.reload_past()

    # -- what the queue says --
    def _measured(self, item: QueueItem, event: Any) -> None:
        if item is not self._item:
            return
        if isinstance(event, LoadLevel):
            self._add_level(LoadSummary.from_json(event.summary))
        elif isinstance(event, Batched) and event.row:
            self.batched_table.append(event.row)

    def _add_level(self, summary: LoadSummary) -> None:
        self.levels.append(summary)
        self.level_table.append(summary)
        self.charts.show_levels(self.levels)
        self.answer.setText(capacity_sentence(self.levels, model=self._model_name, machine=self._where))
        if self._stop is None:
            from models.results.load_cost import capacity_cost

            self._show_cost(capacity_cost(self.levels, self.ctx.settings()))
        else:
            self._show_cost(None, remote=True)

    def _show_cost(self, cost: Any, *, remote: bool = False) -> None:
        if remote:
            self.cost.setText("Cost at that load: not computed for a server elsewhere (its power is not known here).")
        elif cost is None:
            self.cost.setText("Cost at that load: not known (no level met the SLO, or no power figure: set the "
                              "system's watts in Settings where no energy sensor is readable).")
        else:
            self.cost.setText(f"Cost at that load: {cost.describe()}")

    def _changed(self, item: QueueItem) -> None:
        if item is not self._item or item.state.finished:
            return
        if item.state == QUEUED:
            self.status.setText("Waiting: the benchmark queue runs another job first.")
        else:
            self.status.setText(f"Running: {item.progress or 'starting'}")

    def _finished(self, item: QueueItem) -> None:
        if item is not self._item:
            return
        self._show_running()
        if item.state == DONE:
            self.status.setText("Done; kept with the past tests.")
            self._check_nothing_succeeded()
        elif item.state == CANCELLED:
            self.status.setText("Cancelled; what was measured is kept.")
        elif item.state == FAILED:
            self.status.setText("Failed.")
            self.error.setText(item.message or "The test failed with no message.")
        unsaved = [line for line in item.log_tail if line.startswith("Result not saved")]
        if unsaved:
            self.error.setText(unsaved[-1])
        if not self.levels and self.mode.currentText() == LOAD and item.state != FAILED:
            self.answer.setText("No load level finished.")
        self.reload_past()

    def _check_nothing_succeeded(self) -> None:
        if self.levels and self.levels[0].completed == 0:
            self.error.setText("No request succeeded: " + ("; ".join(self.levels[0].errors) or "no answer"))


PAGE = CapacityPage
