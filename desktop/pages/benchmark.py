"""Benchmark page: pick models and settings (presets or every engine parameter), queue, watch live, cancel."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from PySide6.QtCore import QItemSelection, Qt, QTimer
from PySide6.QtWidgets import (QButtonGroup, QFileDialog, QGridLayout, QGroupBox,
                               QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem,
                               QPlainTextEdit, QPushButton, QSplitter, QTabWidget,
                               QVBoxLayout, QWidget)
from shiboken6 import isValid

from desktop.bench_presets import LOCALSCORE, LOCALSCORE_FREE, PRESET_TIPS, PRESETS
from desktop.bench_queue import FAILED, RUNNING, QueueItem
from desktop.bench_rpc import RpcChoice, pool_lines
from desktop.charts import LiveChart
from desktop.context import AppContext
from desktop.jobs import run_job
from desktop.metrics import model_where, result_columns
from desktop.pages import SPACING, Page
from desktop.queue_panel import QueuePanel, localscore_text, state_text
from desktop.tables import RowTable, table_view
from models.bench.trust.adaptive import AdaptivePlan
from models.bench.localscore import ABOUT as LOCALSCORE_ABOUT
from models.bench.localscore import localscore_jobs
from models.bench.spec import DEFAULT_REPETITIONS, KV_TYPES, BenchJob, BenchSweep, default_threads
from models.errors import BenchmarkError

log = logging.getLogger(__name__)

# (field, label, tooltip); every list field takes comma-separated values, swept as a cross product.
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("n_prompt", "Prompt tokens", "ppN tests: tokens processed as one prompt (0 = none). Comma list."),
    ("n_gen", "Generated tokens", "tgN tests: tokens generated one at a time (0 = none). Comma list."),
    ("n_pg", "Prompt+gen pairs", "pgN,M tests as p:g pairs, e.g. 512:128. Comma list."),
    ("n_depth", "Context depth", "Tokens already in the context before each test. Comma list."),
    ("n_threads", "Threads", "CPU threads (llama-bench's default: physical cores). Comma list."),
    ("n_gpu_layers", "GPU layers", "Layers offloaded to the GPU; -1 = every layer and the output (llama-bench's "
                                   "default), 0 = none. Comma list."),
    ("n_batch", "Batch", "Logical batch size (n_batch). Comma list."),
    ("n_ubatch", "Micro-batch", "Physical batch size (n_ubatch), at most n_batch. Comma list."),
    ("flash_attn", "Flash attention", "on, off or auto. Comma list."),
    ("type_k", "KV type K", f"K cache type: {', '.join(KV_TYPES)}. Comma list."),
    ("type_v", "KV type V", f"V cache type: {', '.join(KV_TYPES)}. Comma list."),
    ("use_mmap", "mmap", "auto: map the model file unless a device cannot (llama-bench's default); on: always "
                       "map it; off: read it into memory. Comma list."),
    ("repetitions", "Repetitions", "Timed repetitions of each test, after one warmup; auto (the default): repeat "
                                   "until the 95% confidence interval of the mean is within ±2% (3 to 30 "
                                   "repetitions, 60 s at most); a number: exactly that many, as llama-bench's -r."),
    ("ttft", "TTFT prompt", "Also time the first token of a real chat prompt of about this many tokens "
                            "(0 = not measured)."),
)


def _ints(text: str, name: str) -> list[int]:
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise BenchmarkError(f"{name}: use whole numbers separated by commas, got {text!r}.") from None


def _words(text: str) -> list[str]:
    return [part.strip().lower() for part in text.split(",") if part.strip()]


class BenchmarkPage(Page):
    name = "benchmark"  # title and hint: desktop.pages.PAGES

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.fields: dict[str, QLineEdit] = {}
        self._loading_preset = False
        top = QHBoxLayout()
        top.setSpacing(SPACING)
        top.addWidget(self._models_box(), 2)
        top.addWidget(self._settings_box(), 3)
        self.body.addLayout(top)

        self.queue_panel = QueuePanel(ctx.bench, self)
        panel = self.queue_panel
        self.queue, self.queue_view = panel.table, panel.view
        self.cancel_button, self.remove_button = panel.cancel_button, panel.remove_button
        self.clear_queue_button, self.clear_finished_button = panel.clear_queue_button, panel.clear_finished_button
        self.queue_view.selectionModel().selectionChanged.connect(self._selected)
        self.chart = LiveChart()
        self.chart.setMinimumHeight(150)  # the page must fit a 1024×700 screen under the settings form
        self.results = RowTable(result_columns(), parent=self)
        self.results_view = table_view(self.results)
        self.detail = QPlainTextEdit()
        self.detail.setReadOnly(True)
        self.detail.setPlaceholderText("Select a run in the queue to see its log, or why it failed.")
        self.tabs = QTabWidget()
        self.tabs.addTab(self.results_view, "Results")
        self.tabs.addTab(self.detail, "Log")
        lower = QSplitter(Qt.Orientation.Horizontal)
        lower.addWidget(self.tabs)
        lower.addWidget(self.chart)
        lower.setSizes([560, 440])
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(panel)
        split.addWidget(lower)
        split.setChildrenCollapsible(False)
        split.setSizes([240, 220])  # the queue gets half the room: four rows or so on a 1024×700 screen
        self.split = split
        self.body.addWidget(split, 1)

        bench = ctx.bench
        bench.changed.connect(self._changed)
        bench.sample.connect(self._sample)
        bench.finished.connect(self._finished)
        self._detail_timer = QTimer(self)
        self._detail_timer.setSingleShot(True)
        self._detail_timer.setInterval(300)
        self._detail_timer.timeout.connect(self._refresh_detail)
        ctx.benchmark_requested.connect(self.pick_models)
        ctx.library_changed.connect(self.reload_models)
        self._n_ctx_train: dict[Path, int | None] = {}  # read from each model's header, once
        self._context_timer = QTimer(self)
        self._context_timer.setSingleShot(True)
        self._context_timer.setInterval(250)  # one header read after typing stops, not one per key
        self._context_timer.timeout.connect(self.check_context)
        for key in ("n_prompt", "n_gen", "n_pg", "n_depth"):
            self.fields[key].textChanged.connect(lambda _text: self._context_timer.start())
        self.models.itemChanged.connect(lambda _item: self._context_timer.start())
        self.set_preset("Quick")
        # Listing the models imports the library (a third of a second): after the window is on screen.
        QTimer.singleShot(100, self.reload_models)

    # -- building --
    def _models_box(self) -> QGroupBox:
        box = QGroupBox("Models")
        self.models = QListWidget()
        self.models.setToolTip("Tick the models to benchmark; each one runs in its own worker process.")
        add = QPushButton("Add file…")
        add.setToolTip("Benchmark any GGUF file on disk.")
        add.clicked.connect(self._add_file)
        layout = QVBoxLayout(box)
        layout.addWidget(self.models, 1)
        row = QHBoxLayout()
        row.addWidget(add)
        row.addStretch(1)
        layout.addLayout(row)
        return box

    def _settings_box(self) -> QGroupBox:
        box = QGroupBox("Settings")
        layout = QVBoxLayout(box)
        presets = QHBoxLayout()
        presets.setSpacing(4)
        self.preset_buttons = QButtonGroup(self)
        for name in (*PRESETS, "Custom"):
            button = QPushButton(name)
            button.setCheckable(True)
            button.setProperty("segment", True)  # drawn as a segmented choice by the app's style sheet
            button.setToolTip(PRESET_TIPS[name])
            button.setObjectName(f"preset-{name.replace(' ', '-').lower()}")
            # Five presets in one row: a narrower pad keeps the window's smallest width what it was with four.
            button.setStyleSheet("padding: 4px 8px;")
            self.preset_buttons.addButton(button)
            presets.addWidget(button)
        self.preset_buttons.setExclusive(True)
        self.preset_buttons.buttonClicked.connect(lambda button: self.set_preset(button.text()))
        presets.addStretch(1)
        layout.addLayout(presets)
        # What the chosen preset is, where a tooltip is not enough (LocalScore: what its score means).
        self.preset_info = QLabel()
        self.preset_info.setObjectName("presetInfo")
        self.preset_info.setWordWrap(True)
        self.preset_info.setVisible(False)
        layout.addWidget(self.preset_info)
        grid = QGridLayout()
        grid.setHorizontalSpacing(SPACING)
        defaults = self._defaults()
        for position, (key, label, tip) in enumerate(FIELDS):
            edit = QLineEdit(defaults.get(key, ""))
            edit.setToolTip(tip)
            edit.setObjectName(f"field-{key}")
            edit.textEdited.connect(self._edited)
            caption = QLabel(label)
            caption.setToolTip(tip)
            caption.setBuddy(edit)
            row, column = divmod(position, 2)
            grid.addWidget(caption, row, column * 2)
            grid.addWidget(edit, row, column * 2 + 1)
            self.fields[key] = edit
        layout.addLayout(grid)
        self.rpc_choice = RpcChoice(self.ctx)  # this PC, or with the remote devices (llama-bench's -rpc)
        layout.addWidget(self.rpc_choice)
        actions = QHBoxLayout()
        self.error = QLabel()
        self.error.setObjectName("formError")
        self.error.setStyleSheet("color: #d9534f;")
        self.error.setWordWrap(True)
        self.run_button = QPushButton("Run benchmark")
        self.run_button.setDefault(True)
        self.run_button.setShortcut("Ctrl+Return")
        self.run_button.setToolTip("Queue the ticked models with these settings (Ctrl+Enter).")
        self.run_button.clicked.connect(self.run_selected)
        actions.addWidget(self.error, 1)
        actions.addWidget(self.run_button)
        layout.addLayout(actions)
        return box

    def _defaults(self) -> dict[str, str]:
        threads = self._default_threads()
        chosen = self.ctx.settings()  # the Settings page's benchmark defaults (each may be a comma list)
        return {"n_pg": "", "ttft": "0", "repetitions": "auto", "n_threads": str(threads), "n_gpu_layers": "-1",
                "n_batch": "2048",
                "n_ubatch": "512", "flash_attn": chosen.bench_flash_attn, "type_k": chosen.bench_type_k,
                "type_v": chosen.bench_type_v, "use_mmap": chosen.bench_use_mmap}

    def _default_threads(self) -> int:
        settings = self.ctx.settings()
        value = getattr(settings, "default_threads", None) if settings is not None else None
        return int(value) if value else default_threads()

    # -- presets --
    def set_preset(self, name: str) -> None:
        self._loading_preset = True
        for button in self.preset_buttons.buttons():
            button.setChecked(button.text() == name)
        values = {**self._defaults(), **PRESETS.get(name, {})}
        if name != "Custom":
            for key, edit in self.fields.items():
                edit.setText(values.get(key, edit.text()))
        # LocalScore's tests and settings are fixed: shown, not editable, while its preset is on.
        for key, edit in self.fields.items():
            fixed = name == LOCALSCORE and key not in LOCALSCORE_FREE
            edit.setReadOnly(fixed)
            edit.setStyleSheet("color: palette(mid);" if fixed else "")  # seen as not editable
        self.preset_info.setText(LOCALSCORE_ABOUT if name == LOCALSCORE else "")
        self.preset_info.setVisible(name == LOCALSCORE)
        self.preset = name
        self._loading_preset = False

    def _edited(self, _text: str) -> None:
        if self.preset == LOCALSCORE and self.sender() in [self.fields[key] for key in LOCALSCORE_FREE]:
            return  # threads, offload and repetitions are LocalScore's own options
        if not self._loading_preset and self.preset != "Custom":
            self.set_preset("Custom")

    def jobs(self, models: list[Path]) -> list[BenchJob]:
        """The jobs the form describes: the sweep's, or LocalScore's tests for each model, thread count and
        offload (its repetitions, or auto); raises BenchmarkError naming the bad field."""
        sweep = self.sweep(models)
        if self.preset != LOCALSCORE:
            return sweep.jobs()
        scored = localscore_jobs(sweep.jobs(), repetitions=sweep.repetitions)
        return [dataclasses.replace(job, adaptive=sweep.adaptive) for job in scored]

    def sweep(self, models: list[Path]) -> BenchSweep:
        """The sweep the form describes; raises BenchmarkError naming the bad field."""
        f = {key: edit.text().strip() for key, edit in self.fields.items()}
        pairs: list[tuple[int, int]] = []
        for part in _words(f["n_pg"]):
            p, _, g = part.partition(":")
            pairs.append((_ints(p, "Prompt+gen pairs")[0], _ints(g or "0", "Prompt+gen pairs")[0]))
        bools = {"1": True, "on": True, "yes": True, "true": True, "0": False, "off": False, "no": False,
                 "false": False, "auto": None}
        try:
            mmap: list[bool | None] = [bools[word] for word in _words(f["use_mmap"])]
        except KeyError:
            raise BenchmarkError("mmap: use auto, on or off.") from None
        sweep = BenchSweep(
            models=models, n_prompt=_ints(f["n_prompt"], "Prompt tokens"), n_gen=_ints(f["n_gen"], "Generated tokens"),
            n_pg=pairs, n_depth=_ints(f["n_depth"], "Context depth"), n_threads=_ints(f["n_threads"], "Threads"),
            n_gpu_layers=_ints(f["n_gpu_layers"], "GPU layers"), n_batch=_ints(f["n_batch"], "Batch"),
            n_ubatch=_ints(f["n_ubatch"], "Micro-batch"), flash_attn=_words(f["flash_attn"]),  # type: ignore[arg-type]
            type_k=_words(f["type_k"]), type_v=_words(f["type_v"]), use_mmap=mmap,
            repetitions=DEFAULT_REPETITIONS if f["repetitions"].lower() == "auto" else
            (_ints(f["repetitions"], "Repetitions") or [0])[0],
            ttft_prompt_tokens=(_ints(f["ttft"], "TTFT prompt") or [0])[0],
            adaptive=AdaptivePlan() if f["repetitions"].lower() == "auto" else None)
        sweep.rpc = self.rpc_choice.pools()
        if sweep.ttft_prompt_tokens < 0:
            raise BenchmarkError(f"TTFT prompt must be at least 0, got {sweep.ttft_prompt_tokens}.")
        sweep.validate()
        return sweep

    # -- the trained context: a depth beyond it is refused when typed, not at run time --
    def check_context(self) -> None:
        """Read the trained context of the ticked models (off the GUI thread), then say what does not fit."""
        missing = [path for path in self.picked() if path not in self._n_ctx_train]
        if not missing:
            self._show_context_problem()
            return

        def read() -> dict[Path, int | None]:
            from models.errors import ModelFileError
            from models.gguf.reader import read_gguf_header

            found: dict[Path, int | None] = {}
            for path in missing:
                try:
                    found[path] = read_gguf_header(path).context_length or None
                except (ModelFileError, OSError) as error:
                    log.info("no trained context for %s: %s", path, error)
                    found[path] = None  # the run itself says what is wrong with the file
            return found

        def done(found: dict[Path, int | None]) -> None:
            if not isValid(self.models):
                return  # the window closed while the headers were read
            self._n_ctx_train.update(found)
            self._show_context_problem()

        run_job(read, on_done=done)

    def context_problem(self) -> str:
        """Why a test does not fit a ticked model's trained context, in words; "" when all fit (or unknown)."""
        try:
            jobs = self.jobs(self.picked())
        except BenchmarkError:
            return ""  # the form's own error is said when Run is pressed
        for job in jobs:
            trained = self._n_ctx_train.get(Path(job.model_path))
            if not trained:
                continue
            for test in job.tests:
                if test.n_ctx > trained:
                    # The deepest depth that leaves room for every test of the run, not only this one.
                    room = trained - max(t.n_prompt + t.n_gen for t in job.tests)
                    hint = (" LocalScore's tests are fixed: its score cannot be measured for this model."
                            if self.preset == LOCALSCORE else
                            f" Use a context depth of at most {room:,}." if test.n_depth and room >= 0 else
                            " Use fewer prompt or generated tokens.")
                    return (f"{test.name} needs {test.n_ctx:,} tokens of context, but "
                            f"{Path(job.model_path).name} was trained for {trained:,}.{hint}")
        return ""

    def _show_context_problem(self) -> None:
        problem = self.context_problem()
        if problem or self.error.property("context"):
            self.error.setText(problem)
            self.error.setProperty("context", bool(problem))

    # -- models --
    def reload_models(self) -> None:
        """List the starter model and the library's models (scanned off the GUI thread)."""
        run_job(self.ctx.local_models, on_done=self._set_models)

    def _set_models(self, entries: list[tuple[str, Path, str]]) -> None:
        ticked = set(self.picked()) or {path for _, path, _ in entries[:1]}
        self.models.clear()
        for name, path, tip in entries:
            self._add_model_item(name, path, tip, checked=path in ticked)
        self._context_timer.start()

    def _add_model_item(self, name: str, path: Path, tip: str, *, checked: bool) -> None:
        for row in range(self.models.count()):
            existing = self.models.item(row)
            if existing.data(Qt.ItemDataRole.UserRole) == path:
                existing.setCheckState(Qt.CheckState.Checked if checked else existing.checkState())
                return
        item = QListWidgetItem(name)
        item.setData(Qt.ItemDataRole.UserRole, path)
        item.setData(Qt.ItemDataRole.UserRole + 1, name)
        where = model_where(path)
        item.setToolTip((tip or str(path)) + (f"\nfrom {where}" if where else ""))
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
        self.models.addItem(item)
        self._tell_apart()

    def _tell_apart(self) -> None:
        """Same file name from different repos or folders: name the repo or folder beside each."""
        items = [self.models.item(row) for row in range(self.models.count())]
        names = [str(item.data(Qt.ItemDataRole.UserRole + 1)) for item in items]
        for item, name in zip(items, names):
            twin = names.count(name) > 1
            where = model_where(item.data(Qt.ItemDataRole.UserRole))
            item.setText(f"{name} — {where}" if twin and where else name)

    def picked(self) -> list[Path]:
        return [self.models.item(row).data(Qt.ItemDataRole.UserRole) for row in range(self.models.count())
                if self.models.item(row).checkState() == Qt.CheckState.Checked]

    def pick_models(self, paths: list[Path]) -> None:
        for row in range(self.models.count()):
            self.models.item(row).setCheckState(Qt.CheckState.Unchecked)
        for path in paths:
            self._add_model_item(Path(path).name, Path(path), str(path), checked=True)

    def _add_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Benchmark a GGUF file", str(Path.home()),
                                              "GGUF models (*.gguf);;All files (*)")
        if path:
            self.add_file(Path(path))

    def add_file(self, path: Path) -> None:
        """Read the file's GGUF header off the GUI thread as it is given; add it ticked, or say in words what it
        is instead (not "starts with b'hell'" when the benchmark runs)."""
        from desktop.model_files import check_model_file

        self.error.clear()
        run_job(lambda: check_model_file(path),
                on_done=lambda _header: self._add_model_item(path.name, path, str(path), checked=True),
                on_error=lambda error: self.error.setText(f"Not added: {error}"))

    # -- running --
    def run_selected(self) -> list[QueueItem]:
        self.error.clear()
        models = self.picked()
        try:
            jobs = self.jobs(models)
        except BenchmarkError as error:
            self.error.setText(str(error))
            return []
        problem = self.context_problem()
        if problem:
            self.error.setText(problem)
            return []
        self.chart.clear()
        return self.ctx.bench.enqueue(jobs)

    def _changed(self, item: QueueItem) -> None:
        if item.state == RUNNING and self._selected_item() is None:
            self.queue_view.selectRow(self.queue_panel.position(item))
        elif item is self._selected_item():
            self._detail_timer.start()  # memory and progress arrive ten times a second; redraw the log calmly

    def _sample(self, item: QueueItem, test: str, repetition: int, tokens_per_s: float) -> None:
        # One line per test; with several runs in the queue, the run's number tells the lines apart.
        runs = self.queue.rows
        label = test if len(runs) < 2 else f"#{runs.index(item) + 1} {test}"
        self.chart.add_sample(label, repetition, tokens_per_s)

    def _finished(self, item: QueueItem) -> None:
        if item is self._selected_item():
            self._show_detail(item)

    def _selected_item(self) -> QueueItem | None:
        return self.queue_panel.selected()

    def _selected(self, _new: QItemSelection, _old: QItemSelection) -> None:
        item = self._selected_item()
        if item is not None:
            self._show_detail(item)

    def _refresh_detail(self) -> None:
        item = self._selected_item()
        if item is not None:
            self._show_detail(item)

    def _show_detail(self, item: QueueItem) -> None:
        if [id(r) for r in item.results] != [id(r) for r in self.results.rows]:
            self.results.set_rows(item.results)
            self.results_view.resizeColumnsToContents()
        lines = [f"{item.model_name} — {item.settings}", f"State: {state_text(item)}"]
        lines += pool_lines(item.results)  # the RPC servers, their memory and link, where the run used them
        if localscore_text(item):
            from models.bench.localscore import score_lines

            lines += ["", *score_lines(item.results), LOCALSCORE_ABOUT]
        if item.state == FAILED:
            lines += ["", f"Why it failed: {item.message}"]
            if item.detail:
                lines += ["", item.detail]
            self.tabs.setCurrentWidget(self.detail)
        if item.log_tail:
            lines += ["", "Log:", *item.log_tail]
        self.detail.setPlainText("\n".join(lines))

    def shown(self) -> None:
        self.queue_view.setFocus()


PAGE = BenchmarkPage
