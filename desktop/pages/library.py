"""Library page: the GGUF models on this machine with their header facts; add a folder, import, delete, benchmark."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QItemSelection, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QLineEdit, QMessageBox, QPushButton, QWidget

from desktop.context import AppContext
from desktop.jobs import Change, run_job
from desktop.pages import SPACING, Page
from desktop.tables import Column, RowTable, sortable, table_view
from models.units import fmt_bytes, fmt_count
from models.hub.library import LibraryEntry
from models.text import plural

log = logging.getLogger(__name__)

SOURCE_NAMES = {"starter": "starter", "hf-cache": "Hugging Face cache", "folder": "your folder", "imported": "imported",
                "owned": "Tokenometer", "lmstudio": "LM Studio", "llama.cpp": "llama.cpp cache", "ollama": "Ollama",
                "gpt4all": "GPT4All"}


def _name(entry: LibraryEntry) -> str:
    return entry.label or entry.path.name


def _facts_tip(entry: LibraryEntry) -> str:
    if entry.header_error:
        return f"The header could not be read: {entry.header_error}"
    h = entry.header
    if h is None:
        return str(entry.path)
    return (f"{h.name or entry.path.name}\n{h.architecture}, {fmt_count(h.n_params)} parameters, {h.block_count} layers"
            f"\nembedding {h.embedding_length}, heads {h.head_count} (KV {h.head_count_kv})"
            f"\ntrained context {h.context_length} tokens\n{entry.path}")


LIBRARY_COLUMNS: list[Column[LibraryEntry]] = [
    Column("Model", _name, cell_tip=_facts_tip,
           color=lambda e: QColor("#d9534f") if e.header_error else None),
    Column("Architecture", lambda e: e.header.architecture if e.header else "",
           tip="The model family, from the GGUF header."),
    Column("Params", lambda e: e.header.n_params if e.header else None, fmt_count, numeric=True,
           tip="Number of parameters, counted from the tensors in the GGUF header."),
    Column("Quant", lambda e: e.header.file_type_name if e.header else "", tip="The file's quantization type."),
    Column("Context", lambda e: e.header.context_length if e.header else None,
           lambda v: f"{v:,} tokens" if v else "–", numeric=True, tip="The context length the model was trained for."),
    Column("Size", lambda e: e.size, fmt_bytes, numeric=True, tip="Size on disk (every shard of a split model)."),
    Column("Source", lambda e: SOURCE_NAMES.get(e.source, e.source),
           tip="Where the file was found; only Hugging Face cache and Tokenometer's own files can be deleted here."),
    Column("Repo", lambda e: e.repo_id or "", tip="The Hub repo, where known."),
    Column("Path", lambda e: str(e.path)),
]


class LibraryPage(Page):
    name = "library"

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.table = RowTable(LIBRARY_COLUMNS, parent=self)
        self.proxy = sortable(self.table, self)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter by name, architecture, quant or source …")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.bench_button = QPushButton("Benchmark this")
        self.bench_button.setToolTip("Open the Benchmark page with the selected models ticked.")
        self.bench_button.clicked.connect(self.benchmark_selected)
        self.add_button = QPushButton("Add folder…")
        self.add_button.setToolTip("Scan a folder (and its subfolders) for GGUF files from now on.")
        self.add_button.clicked.connect(lambda: self.add_folder())
        self.import_button = QPushButton("Import file…")
        self.import_button.setToolTip("Add one GGUF file; it stays where it is.")
        self.import_button.clicked.connect(lambda: self.import_file())
        self.delete_button = QPushButton("Delete")
        self.delete_button.setToolTip("Delete a downloaded model from disk, or drop an imported file from the list.")
        self.delete_button.clicked.connect(lambda: self.delete_selected())
        row = QHBoxLayout()
        row.setSpacing(SPACING)
        row.addWidget(self.filter, 1)
        for button in (self.add_button, self.import_button, self.delete_button, self.bench_button):
            row.addWidget(button)
        self.body.addLayout(row)
        self.view = table_view(self.proxy, sortable_view=True, multi=True)
        self.view.doubleClicked.connect(lambda _index: self.benchmark_selected())
        self.view.selectionModel().selectionChanged.connect(self._selection_changed)
        self.body.addWidget(self.view, 1)
        self.status = QLabel("Looking for models …")
        self.status.setObjectName("muted")
        # What went wrong with the last thing the user gave (a file that is not a model, say), in red, until
        # the next action: the status line below is rewritten by every reload.
        self.error = QLabel()
        self.error.setObjectName("formError")
        self.error.setWordWrap(True)
        self.error.setTextFormat(Qt.TextFormat.PlainText)  # a file name may hold anything, even "<b>"
        self.error.setVisible(False)
        self.body.addWidget(self.error)
        self.body.addWidget(self.status)
        self._selection_changed(QItemSelection(), QItemSelection())
        ctx.watch(Change.LIBRARY, self.reload, owner=self)
        self.reload()

    def reload(self) -> None:
        from models.hub.library import list_models

        run_job(list_models, on_done=self._loaded)

    def _loaded(self, entries: list[LibraryEntry]) -> None:
        self.table.set_rows(entries)
        self.view.resizeColumnsToContents()
        total = sum(entry.size for entry in entries)
        self.status.setText(f"{plural(len(entries), 'model')}, {fmt_bytes(total)} on disk. "
                            "Double-click one to benchmark it.")

    def selected(self) -> list[LibraryEntry]:
        return [self.table.row(self.proxy.mapToSource(index).row())
                for index in self.view.selectionModel().selectedRows()]

    def _selection_changed(self, _new: QItemSelection, _old: QItemSelection) -> None:
        chosen = self.selected()
        self.bench_button.setEnabled(bool(chosen))
        self.delete_button.setEnabled(bool(chosen) and all(e.deletable or e.source == "imported" for e in chosen))

    def select_path(self, path: Path) -> None:
        position = self.table.find(lambda entry: entry.path == path)
        if position >= 0:
            self.view.selectRow(self.proxy.mapFromSource(self.table.index(position, 0)).row())

    def benchmark_selected(self) -> None:
        chosen = self.selected()
        if chosen:
            self.ctx.benchmark([entry.path for entry in chosen])

    def show_error(self, text: str, *, tip: str = "") -> None:
        self.error.setText(text)
        self.error.setToolTip(tip)
        self.error.setVisible(bool(text))

    def add_folder(self, folder: Path | None = None) -> None:
        from models.hub.library import add_folder

        if folder is None:
            picked = QFileDialog.getExistingDirectory(self, "Add a model folder", str(Path.home()))
            folder = Path(picked) if picked else None
        if folder is not None:
            self.show_error("")
            chosen = folder
            self.ctx.change(lambda: add_folder(chosen), changes=Change.LIBRARY,
                            on_error=lambda error: self.show_error(f"Folder not added: {error}"))

    def import_file(self, path: Path | None = None) -> None:
        """Check the file's GGUF header as it is given (off the GUI thread), then add it; say in words if it is
        not a model, instead of failing later when it is benchmarked."""
        from desktop.model_files import NotAModelError, check_model_file
        from models.hub.library import import_file

        if path is None:
            picked, _ = QFileDialog.getOpenFileName(self, "Import a GGUF file", str(Path.home()),
                                                    "GGUF models (*.gguf);;All files (*)")
            path = Path(picked) if picked else None
        if path is None:
            return
        chosen = path
        self.show_error("")
        self.status.setText(f"Reading the header of {chosen.name} …")

        def work() -> LibraryEntry:
            check_model_file(chosen)  # NotAModelError, in words, before anything is added
            return import_file(chosen)

        def done(entry: LibraryEntry) -> None:
            self.status.setText(f"Imported {entry.path.name}.")

        def failed(error: BaseException) -> None:
            detail = error.detail if isinstance(error, NotAModelError) else ""
            self.show_error(f"Not imported: {error}", tip=detail)

        self.ctx.change(work, changes=Change.LIBRARY, on_done=done, on_error=failed)

    def delete_selected(self, *, confirm: bool = True) -> None:
        from models.hub.library import delete, forget

        chosen = self.selected()
        if not chosen:
            return
        doomed = [e for e in chosen if e.deletable]
        text = (f"Delete {len(doomed)} model files ({fmt_bytes(sum(e.size for e in doomed))}) from disk?"
                if doomed else f"Drop {len(chosen)} imported files from the list? The files stay where they are.")
        if confirm and QMessageBox.question(self, "Delete models", text) != QMessageBox.StandardButton.Yes:
            return

        def work() -> int:
            freed = 0
            for entry in chosen:
                if entry.deletable:
                    freed += delete(entry)
                else:
                    forget(entry)
            return freed

        def done(freed: int) -> None:
            self.status.setText(f"Freed {fmt_bytes(freed)}." if freed else "Removed from the list.")

        self.show_error("")
        self.ctx.change(work, changes=Change.LIBRARY, on_done=done,
                        on_error=lambda error: self.show_error(f"Not deleted: {error}"))

    def shown(self) -> None:
        self.view.setFocus()


PAGE = LibraryPage
