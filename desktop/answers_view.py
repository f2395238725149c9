"""The same prompt, side by side: 2–4 models answer in turn in the bench worker, each answer streaming into its own
column with its TTFT and tokens/s; the sampling settings and seed shown above them and kept with each answer in
the results store (measurements of kind answers, one per model, sharing a group id)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QGroupBox, QHBoxLayout, QLabel, QListWidget,
                               QListWidgetItem, QPlainTextEdit, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from desktop.jobs import run_job

log = logging.getLogger(__name__)

MIN_MODELS, MAX_MODELS = 2, 4


class _Relay(QObject):
    arrived = Signal(object, object)  # BenchJob, BenchEvent, from the runner's thread


class AnswersView(QWidget):
    """Prompt, models to tick, sampling; one column per model once they run, or a kept group reopened."""

    finished = Signal()  # a run ended (its answers are in the store)

    def __init__(self, busy: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from models.bench.quality.answers import SAMPLE_PROMPTS

        self.busy = busy or (lambda: "")  # () -> why no run may start now ("" when one may)
        self.relay = _Relay(self)
        self.relay.arrived.connect(self._heard)
        self._runner: Any = None
        self._cancelled = False
        self._jobs: list[Any] = []
        self.columns: dict[int, tuple[QPlainTextEdit, QLabel]] = {}  # by job index
        self.shown_group = ""  # the group id of the kept answers on show ("" for a live run or none)
        self.prompt = QComboBox()
        self.prompt.setEditable(True)
        self.prompt.addItems(list(SAMPLE_PROMPTS))
        self.prompt.setToolTip("Type a prompt, or pick one of these")
        self.models = QListWidget()
        self.models.setMaximumHeight(110)
        self.models.setToolTip(f"Tick {MIN_MODELS} to {MAX_MODELS} models: they answer one after another")
        self.temperature, self.seed, self.n_predict = QDoubleSpinBox(), QSpinBox(), QSpinBox()
        self.temperature.setRange(0.0, 5.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setValue(0.8)
        self.temperature.setToolTip("0: greedy (the most likely token each time)")
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(1234)
        self.n_predict.setRange(1, 4096)
        self.n_predict.setValue(256)
        self.run_button, self.cancel_button = QPushButton("Answer"), QPushButton("Cancel")
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        row = QHBoxLayout()
        for label, widget in (("Temperature", self.temperature), ("Seed", self.seed), ("Tokens", self.n_predict)):
            row.addWidget(QLabel(label))
            row.addWidget(widget)
        row.addStretch(1)
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        self.status, self.sampling = QLabel(""), QLabel("")
        self.status.setWordWrap(True)
        self.sampling.setObjectName("sampling")
        self.answers = QHBoxLayout()
        layout = QVBoxLayout(self)
        layout.addWidget(self.prompt)
        layout.addWidget(self.models)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(self.sampling)
        layout.addLayout(self.answers, 1)

    def set_models(self, models: list[tuple[str, str]]) -> None:
        """(name, path) of the models to offer; ticks are kept for those still offered."""
        ticked = set(self.ticked())
        present = {self.models.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.models.count())}
        for name, path in models:
            if path in present:
                continue
            item = QListWidgetItem(name)
            item.setData(Qt.ItemDataRole.UserRole, path)
            item.setToolTip(path)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if path in ticked else Qt.CheckState.Unchecked)
            self.models.addItem(item)

    def tick(self, paths: list[str]) -> None:
        for i in range(self.models.count()):
            item = self.models.item(i)
            item.setCheckState(Qt.CheckState.Checked if item.data(Qt.ItemDataRole.UserRole) in paths
                               else Qt.CheckState.Unchecked)

    def ticked(self) -> list[str]:
        return [self.models.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.models.count())
                if self.models.item(i).checkState() == Qt.CheckState.Checked]

    def start(self) -> None:
        from models.bench.quality.answers import AnswersPlan
        from models.bench.events import BenchEvent
        from models.bench.runner import BenchRunner, check_job
        from models.bench.spec import BenchJob, BenchParams, BenchSweep

        paths = self.ticked()
        if not MIN_MODELS <= len(paths) <= MAX_MODELS:
            self.status.setText(f"Tick {MIN_MODELS} to {MAX_MODELS} models to compare; {len(paths)} ticked.")
            return
        why = self.busy()
        if why:
            self.status.setText(why)
            return
        plan = AnswersPlan(prompt=self.prompt.currentText().strip(), n_predict=self.n_predict.value(),
                           temperature=self.temperature.value(), seed=self.seed.value())
        defaults = BenchSweep(models=[Path(paths[0])])
        params = BenchParams(n_threads=defaults.n_threads[0], n_gpu_layers=defaults.n_gpu_layers[0])
        jobs = [BenchJob(model_path=Path(p), params=params, tests=(), repetitions=1, answers=plan) for p in paths]
        problem = plan.problem() or next((p for p in map(check_job, jobs) if p), None)
        if problem:
            self.status.setText(problem)
            return
        self.sampling.setText(sampling_line(plan.sampling()))
        self._clear_columns()
        self.shown_group = ""
        for index, job in enumerate(jobs):
            self._add_column(index, job.model_path.name, "waiting")
        runner = BenchRunner(on_event=self.relay.arrived.emit)
        self._runner, self._jobs, self._cancelled = runner, jobs, False
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText("Starting…")

        from models.results.answers_records import answers_settings, open_answers_recorder

        settings = answers_settings(plan, jobs)  # the answers of one prompt share a group id in the store

        def work() -> None:
            for job in jobs:
                recorder = open_answers_recorder(job, settings)

                def on_event(job_: Any, event: Any, record: Any = recorder) -> None:
                    record(job_, event)  # saved from the runner's thread (SQLite is per thread)
                    self.relay.arrived.emit(job_, event)

                runner.on_event = on_event
                runner.run([job])
                if recorder.error is not None:
                    self.relay.arrived.emit(job, BenchEvent("log", {"message": f"Not saved: {recorder.error}"}))
                if self._cancelled:
                    return

        run_job(work, on_done=self._ended, on_error=self._ended)

    def cancel(self) -> None:
        if self._runner is not None:
            self._cancelled = True
            self.status.setText("Cancelling…")
            self._runner.cancel()

    def _add_column(self, index: int, title: str, figures_text: str, text: str = "") -> None:
        box = QGroupBox(title)
        answer, figures = QPlainTextEdit(text), QLabel(figures_text)
        answer.setReadOnly(True)
        figures.setWordWrap(True)
        figures.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        column = QVBoxLayout(box)
        column.addWidget(answer, 1)
        column.addWidget(figures)
        self.answers.addWidget(box)
        self.columns[index] = (answer, figures)

    def show_past(self, group: Any) -> bool:
        """Show a kept group of answers (models.results.answers_records.AnswerGroup) side by side again, with
        each model's figures, the sampling settings and seed; refused (False) while a run is under way."""
        from models.bench.quality.answers import figures

        if self._runner is not None:
            self.status.setText("Answers are being made; open a past prompt when they are done.")
            return False
        self._clear_columns()
        self._jobs = []
        self.shown_group = group.group
        self.prompt.setCurrentText(group.prompt)
        sampling = group.sampling
        self.sampling.setText(sampling_line(sampling) if sampling else "sampling settings not recorded")
        # The controls take the kept settings too, so Answer asks the same again (of the models ticked).
        for key, box in (("temperature", self.temperature), ("seed", self.seed), ("n_predict", self.n_predict)):
            if isinstance(sampling.get(key), (int, float)):
                box.setValue(sampling[key])
        for index, m in enumerate(group.answers):
            line = m.answer or (figures(m.data) if m.data else "")
            if m.status != "ok":
                line = f"{m.status}: {m.error}" if m.error else m.status
            self._add_column(index, m.model_name, line, str(m.data.get("text", "")))
        when = group.started_at[:16].replace("T", " ")
        self.status.setText(f"Kept answers of {when}, {len(group.answers)} model"
                            f"{'s' if len(group.answers) != 1 else ''}.")
        return True

    def _clear_columns(self) -> None:
        while self.answers.count():
            taken = self.answers.takeAt(0)
            widget = taken.widget() if taken is not None else None
            if widget is not None:
                widget.deleteLater()
        self.columns = {}

    def _heard(self, job: Any, event: Any) -> None:
        from models.bench.quality.answers import figures

        index = next((i for i, j in enumerate(self._jobs) if j is job), -1)
        if index not in self.columns:
            return
        text, line = self.columns[index]
        if event.kind == "answer_piece":
            text.moveCursor(text.textCursor().MoveOperation.End)
            text.insertPlainText(str(event.data.get("text", "")))
            line.setText(f"{event.data.get('n', 0)} tokens…")
            self.status.setText(f"{job.model_path.name} is answering ({index + 1} of {len(self._jobs)})")
        elif event.kind == "progress" and event.data.get("phase") == "load":
            line.setText("loading…")
        elif event.kind == "answer":
            result = event.data.get("result", {})
            text.setPlainText(str(result.get("text", "")))  # the whole answer, as the worker assembled it
            line.setText(figures(result))
        elif event.kind == "failure":
            line.setText(f"Failed: {event.data.get('message', '')}")
        elif event.kind == "log" and str(event.data.get("message", "")).startswith("Not saved:"):
            line.setText(f"{line.text()} ({event.data['message']})")

    def _ended(self, outcome: Any) -> None:
        self._runner = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if isinstance(outcome, BaseException):
            self.status.setText(f"Failed: {outcome}")
        else:
            self.status.setText("Cancelled." if self._cancelled else "Done: every model answered in turn.")
        self.finished.emit()


def sampling_line(s: dict[str, Any]) -> str:
    """The sampling settings and seed of an answer, in one line (keys missing from an older record are left out)."""
    parts = [f"temperature {s['temperature']:g}" if "temperature" in s else "",
             f"top-k {s['top_k']}" if "top_k" in s else "", f"top-p {s['top_p']:g}" if "top_p" in s else "",
             f"min-p {s['min_p']:g}" if "min_p" in s else "", f"seed {s['seed']}" if "seed" in s else "",
             f"at most {s['n_predict']} tokens" if "n_predict" in s else "",
             f"chat template {'on' if s['chat_template'] else 'off'}" if "chat_template" in s else ""]
    return " · ".join(p for p in parts if p)
