"""Discover page: search the Hub as you type, a repo's quant files by size with a fit badge and what is already on
disk, its model card, download buttons; an unreachable Hub is said at once and retried quietly."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QItemSelection, Qt, QTimer
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSplitter, QTabWidget,
                               QVBoxLayout, QWidget)

from desktop.context import AppContext
from desktop.jobs import Change, run_job
from desktop.discover_columns import FILE_COLUMNS, REPO_COLUMNS, FileRow
from desktop.model_card import ModelCard
from desktop.pages import SPACING, Page
from desktop.remote_devices import remote_devices
from desktop.tables import RowTable, sortable, table_view
from models.hub.repos import SORT_KEYS, RepoFiles, RepoSummary
from models.units import fmt_count

log = logging.getLogger(__name__)

SEARCH_DELAY_MS = 300
HUB_RETRY_MS = 15_000  # while the Hub is unreachable, ask again this often, without a new message each time
SORT_NAMES = {"downloads": "Most downloaded", "likes": "Most liked", "trending": "Trending",
              "last_modified": "Recently updated"}
def local_files(repo_id: str) -> dict[str, Path]:
    """File name -> path of this repo's models already in the Library (blocking: call from a job)."""
    from models.hub.library import list_models

    return {entry.path.name: entry.path for entry in list_models(read_headers=False, include_other_apps=False)
            if entry.repo_id == repo_id}


class DiscoverPage(Page):
    name = "discover"

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search GGUF models, e.g. qwen 0.5b, llama 3 8b instruct …")
        self.search.setClearButtonEnabled(True)
        self.sort = QComboBox()
        for key in SORT_KEYS:
            self.sort.addItem(SORT_NAMES.get(key, key), key)
        self.author = QLineEdit()
        self.author.setPlaceholderText("author (optional)")
        self.author.setMaximumWidth(200)
        row = QHBoxLayout()
        row.setSpacing(SPACING)
        row.addWidget(self.search, 1)
        row.addWidget(self.author)
        row.addWidget(self.sort)
        self.body.addLayout(row)
        # One visible line when the Hub cannot be reached; it goes when the Hub answers again.
        self.offline = QLabel()
        self.offline.setObjectName("notice")
        self.offline.setWordWrap(True)
        self.offline.setTextFormat(Qt.TextFormat.PlainText)  # an error's words, never markup
        self.offline.setVisible(False)
        self.body.addWidget(self.offline)
        self.repos = RowTable(REPO_COLUMNS, parent=self)
        self.repo_view = table_view(self.repos)
        self.repo_view.setColumnWidth(0, 360)
        self.repo_view.selectionModel().selectionChanged.connect(self._repo_selected)
        self.files = RowTable(FILE_COLUMNS, parent=self)
        self.files_proxy = sortable(self.files, self)
        self.file_view = table_view(self.files_proxy, sortable_view=True)
        # Smallest first: the quant names sort in no useful order (IQ2_XS, Q4_K_M, Q8_0), their sizes do.
        self.file_view.sortByColumn(2, Qt.SortOrder.AscendingOrder)
        self.file_view.selectionModel().selectionChanged.connect(self._file_selected)
        self.file_view.doubleClicked.connect(lambda _index: self.download_selected())
        self.card = ModelCard()
        self.card.setPlaceholderText("Pick a repo to read its model card.")
        self.details = QTabWidget()
        self.details.setDocumentMode(True)
        self.details.addTab(self.file_view, "Files")
        self.details.addTab(self.card, "Model card")
        self.repo_title = QLabel("Pick a repo to see its files.")
        self.repo_title.setObjectName("muted")
        self.repo_title.setWordWrap(True)
        self.download_button = QPushButton("Download")
        self.download_button.setToolTip("Queue the selected file (all its shards); progress is on the Downloads page.")
        self.download_button.setEnabled(False)
        self.download_button.clicked.connect(self.download_selected)
        files_box = QWidget()
        files_layout = QVBoxLayout(files_box)
        files_layout.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        head.addWidget(self.repo_title, 1)
        head.addWidget(self.download_button)
        files_layout.addLayout(head)
        files_layout.addWidget(self.details, 1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.repo_view)
        split.addWidget(files_box)
        split.setSizes([300, 300])
        self.body.addWidget(split, 1)
        self.status = QLabel("Type to search the Hub.")
        self.status.setObjectName("muted")
        self.body.addWidget(self.status)

        # Search as you type, once the typing pauses, and only the newest answer counts.
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SEARCH_DELAY_MS)
        self._timer.timeout.connect(self.run_search)
        self.search.textChanged.connect(lambda _text: self._timer.start())
        self.author.textChanged.connect(lambda _text: self._timer.start())
        self.sort.currentIndexChanged.connect(lambda _index: self.run_search())
        self._search_generation = 0
        self._repo_generation = 0
        self.repo_files: RepoFiles | None = None
        self.searches = 0  # how many searches were sent (the debounce test counts them)
        # While the Hub is unreachable: probe it quietly, and search again once it answers.
        self._retry = QTimer(self)
        self._retry.setInterval(HUB_RETRY_MS)
        self._retry.timeout.connect(self._probe_hub)
        self._probing = False
        self._offline = False  # the notice is up (its isVisible() is False while another page is shown)
        self._search_pending = False
        self._opening: str | None = None
        ctx.watch(Change.LIBRARY, self._mark_local, owner=self)  # a finished download is now on disk
        # Remote devices added, removed or checked again change the pool the badges count: the files are judged again.
        self._remote = remote_devices(ctx)
        self._pool_seen = self._pool_key()
        self._fit_generation = 0
        self._remote.changed.connect(self._remote_changed)

    # -- searching --
    def run_search(self) -> None:
        from models.hub.repos import search_models

        self._search_generation += 1
        generation = self._search_generation
        query, author = self.search.text().strip(), self.author.text().strip() or None
        sort = self.sort.currentData()
        self.searches += 1
        self._search_pending = True
        self.status.setText("Searching …" if not self._offline else "Waiting for the Hub …")
        if not self._offline:
            self._probe_hub()  # answers in a few seconds where the search itself may wait half a minute

        def done(found: list[RepoSummary]) -> None:
            if generation != self._search_generation:
                return  # a newer search was sent meanwhile
            self._search_pending = False
            self._hub_back()
            shown = self._shown_repo
            self.repos.set_rows(found)
            ids = [repo.repo_id for repo in found]
            if shown in ids:
                self.repo_view.selectRow(ids.index(shown))  # still found: its files stay, and its row is marked
            else:
                self._clear_repo()  # the files and card of a repo the new search did not find would mislead
            self.status.setText(f"{len(found)} repos" + (" (the first 50)" if len(found) == 50 else "") + ".")

        def failed(error: BaseException) -> None:
            if generation == self._search_generation:
                self._search_pending = False
                # With the Hub unreachable the notice above already says so; one message is enough.
                self.status.setText("Not connected." if self._offline else f"Search failed: {error}")

        run_job(lambda: list(search_models(query or None, sort=sort, author=author, limit=50)),
                on_done=done, on_error=failed)

    # -- the Hub's reachability --
    def _probe_hub(self) -> None:
        from models.hub.reach import hub_unreachable

        if self._probing:
            return
        self._probing = True

        def done(reason: str | None) -> None:
            self._probing = False
            if reason is None:
                if self._offline:
                    self._hub_back()
                    self.run_search()
                return
            if not self._offline:  # said once; the quiet retries do not rewrite it
                self._offline = True
                self.offline.setText(f"The Hugging Face Hub cannot be reached ({reason}). Trying again every "
                                     f"{HUB_RETRY_MS // 1000} s; the models already on this machine are in the "
                                     "Library (Ctrl+3).")
                self.offline.setVisible(True)
            # The status line must not say it a second time (a failed search's "cannot reach the Hub").
            self.status.setText("Waiting for the Hub …" if self._search_pending else "Not connected.")
            if not self._retry.isActive():
                self._retry.start()

        def failed(error: BaseException) -> None:
            self._probing = False
            log.warning("Hub probe failed: %s", error)

        run_job(hub_unreachable, on_done=done, on_error=failed)

    def _hub_back(self) -> None:
        self._retry.stop()
        self._offline = False
        self.offline.setVisible(False)

    # -- one repo's files --
    def _clear_repo(self) -> None:
        self._repo_generation += 1  # an answer still on its way for the old repo is dropped
        self._opening = None
        self.repo_files = None
        self.files.set_rows([])
        self.card.clear()
        self.repo_title.setText("Pick a repo to see its files.")
        self.download_button.setEnabled(False)

    def _repo_selected(self, _new: QItemSelection, _old: QItemSelection) -> None:
        rows = self.repo_view.selectionModel().selectedRows()
        if rows and self.repos.row(rows[0].row()).repo_id != self._shown_repo:
            self.open_repo(self.repos.row(rows[0].row()).repo_id)

    @property
    def _shown_repo(self) -> str | None:
        """The repo whose files are shown or being listed."""
        return self._opening

    def open_repo(self, repo_id: str) -> None:
        from models.hub.repos import repo_files

        self._repo_generation += 1
        generation = self._repo_generation
        self._opening = repo_id
        self.files.set_rows([])
        self.card.clear()
        self.repo_title.setText(f"{repo_id}: listing files …")

        def work() -> tuple[RepoFiles, dict[str, Path]]:
            found = repo_files(repo_id)
            return found, local_files(repo_id)

        def done(result: tuple[RepoFiles, dict[str, Path]]) -> None:
            found, local = result
            if generation != self._repo_generation:
                return
            self.repo_files = found
            self.files.set_rows([FileRow(model, local=local.get(Path(model.files[0].filename).name))
                                 for model in found.models])
            self.file_view.resizeColumnsToContents()
            facts = [found.architecture or "", f"{fmt_count(found.n_params)} parameters" if found.n_params else "",
                     f"licence {found.license}" if found.license else "",
                     "gated: save a token in Settings" if found.gated else ""]
            self.repo_title.setText(f"{repo_id} — " + " · ".join(f for f in facts if f))
            self._estimate_fits(found, generation)
            self._mark_measured(repo_id, generation)
            self._load_card(found, generation)

        def failed(error: BaseException) -> None:
            if generation == self._repo_generation:
                self._opening = None  # picking it again tries again
                self.repo_title.setText(f"{repo_id}: {error}")

        run_job(work, on_done=done, on_error=failed)

    def _load_card(self, repo: RepoFiles, generation: int) -> None:
        from desktop.model_card import fetch_model_card

        self.card.setPlaceholderText("Fetching the model card …")

        def done(markdown: str | None) -> None:
            if generation == self._repo_generation:
                self.card.show_card(markdown or "*This repo has no model card (README.md).*")

        def failed(error: BaseException) -> None:
            if generation == self._repo_generation:
                self.card.show_card(f"*No model card: {error}*")

        run_job(lambda: fetch_model_card(repo.repo_id, revision=repo.commit), on_done=done, on_error=failed)

    def _mark_local(self) -> None:
        repo = self.repo_files
        if repo is None:
            return
        generation = self._repo_generation

        def done(local: dict[str, Path]) -> None:
            if generation != self._repo_generation:
                return
            for row in self.files.rows:
                row.local = local.get(Path(row.model.files[0].filename).name)
            self.files.set_rows(self.files.rows)
            self._file_selected(QItemSelection(), QItemSelection())

        run_job(lambda: local_files(repo.repo_id), on_done=done)

    def _mark_measured(self, repo_id: str, generation: int) -> None:
        """Beside the fit badge: the speed and quality this machine measured of a file of this repo."""

        def work() -> dict[str, Any]:
            from models.machine.hardware import machine_fingerprint
            from models.results.choice import measured_here

            with self.ctx.open_store() as store:
                return measured_here(store, machine=machine_fingerprint())

        def done(measured: dict[str, Any]) -> None:
            if generation != self._repo_generation:
                return
            for row in self.files.rows:
                found = measured.get(Path(row.model.files[0].filename).name)
                # A file of the same name from another repo is another model: only this repo's (or one whose
                # repo the store does not know) counts.
                row.measured = found if found is not None and found.repo in ("", repo_id) else None
            self.files.set_rows(self.files.rows)

        run_job(work, on_done=done, on_error=lambda error: log.warning("measured figures not read: %s", error))

    def _pool_key(self) -> tuple[Any, ...] | None:
        remote = self._remote
        if not remote.loaded:
            return None
        checks = [remote.checks.get(e) for e in remote.endpoints]
        return tuple((e, c.reachable if c else None, c.memory_free if c else 0)
                     for e, c in zip(remote.endpoints, checks))

    def _remote_changed(self) -> None:
        key = self._pool_key()
        if key == self._pool_seen:
            return  # a check began, or ended with the same answers
        self._pool_seen = key
        if self.repo_files is not None:
            self._estimate_fits(self.repo_files, self._repo_generation)

    def _estimate_fits(self, repo: RepoFiles, generation: int) -> None:
        """Read each file's header over HTTP ranges (a few hundred kB, no download) and judge it, off the GUI thread."""
        from models.fit.estimate import fit_verdict
        from models.fit.here import speed_predictor
        from models.hub.remote import read_remote_header

        rows = [row for row in self.files.rows if row.model.kind == "model"][:16]
        remote = self._remote  # the list as the app holds it (its file may still be being written)
        # Judged again when the remote devices change: only the newest judgement counts, whichever ends first.
        self._fit_generation += 1
        fit_generation = self._fit_generation
        held = (list(remote.endpoints), [remote.checks.get(e) for e in remote.endpoints]) if remote.loaded else None

        def work() -> list[tuple[FileRow, Any, str, Any, Any]]:
            from models.machine.rpc_known import configured_checks, pool_fit
            from models.settings import load_settings

            hardware = self.ctx.probe_hardware()  # once per app; the Hardware page shares it
            # The remote devices' memory as last checked, read once for every file: never a server asked per row.
            if held is not None:
                endpoints, checks = held
            else:
                endpoints = list(load_settings().rpc_endpoints)
                checks = configured_checks(endpoints) if endpoints else []
            try:  # bandwidth and results history read once for every file; no prediction must cost no badge
                predict: Any = speed_predictor(hardware)
            except Exception as error:  # noqa: BLE001
                log.warning("no speed prediction: %s", error)
                predict = None
            out: list[tuple[FileRow, Any, str, Any, Any]] = []
            for row in rows:
                try:
                    header = read_remote_header(repo.repo_id, row.model.files[0].filename, revision=repo.commit)
                    verdict = fit_verdict(header, hardware)
                    pool = pool_fit(header, hardware, checks, endpoints) if endpoints else None
                    note = ("Remote devices are set, but none is counted (not reachable at the last check, or "
                            "never checked): this PC alone."
                            if endpoints and pool is None else "")
                    speed = None
                    if predict is not None:
                        try:
                            speed = predict(header, n_gpu_layers=verdict.n_gpu_layers)
                        except Exception as error:  # noqa: BLE001
                            log.warning("no speed prediction for %s: %s", row.model.name, error)
                    out.append((row, verdict, "", speed, (pool, note)))
                except Exception as error:  # noqa: BLE001 - one unreadable file must not hide the others' fit
                    out.append((row, None, str(error), None, (None, "")))
            return out

        def done(verdicts: list[tuple[FileRow, Any, str, Any, Any]]) -> None:
            if generation != self._repo_generation or fit_generation != self._fit_generation:
                return
            for row, verdict, error, speed, (pool, note) in verdicts:
                row.verdict, row.fit_error, row.speed, row.pool, row.pool_note = verdict, error, speed, pool, note
            self.files.set_rows(self.files.rows)
            self.file_view.resizeColumnToContents(3)  # sized for "…" when listed; a pool's badge is longer

        run_job(work, on_done=done, on_error=lambda error: log.warning("fit estimate failed: %s", error))

    def _file_selected(self, _new: QItemSelection, _old: QItemSelection) -> None:
        row = self.selected_file()
        self.download_button.setEnabled(row is not None)
        on_disk = row is not None and row.local is not None
        # A file already here needs no second download: the button offers what comes next instead.
        self.download_button.setText("Benchmark it (on disk)" if on_disk else "Download")

    def selected_file(self) -> FileRow | None:
        rows = self.file_view.selectionModel().selectedRows()
        return self.files.row(self.files_proxy.mapToSource(rows[0]).row()) if rows else None

    def download_selected(self) -> None:
        from models.hub.download import DownloadRequest

        row, repo = self.selected_file(), self.repo_files
        if row is None or repo is None:
            return
        if row.local is not None:
            self.ctx.benchmark([row.local])
            return
        job = self.ctx.downloads().add(DownloadRequest(repo.repo_id, row.model.files, revision=repo.commit or "main"))
        self.status.setText(f"Queued {job.label}; see Downloads (Ctrl+2).")

    def shown(self) -> None:
        self.search.setFocus()
        if self.repos.rowCount() == 0 and self.searches == 0:
            self.run_search()  # the most downloaded GGUF repos, before anything is typed


PAGE = DiscoverPage
