"""Settings page: storage folders, the Hugging Face token (huggingface_hub's own store), costs and defaults."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                               QListWidget, QPushButton, QScrollArea, QSpinBox, QVBoxLayout, QWidget)

from desktop.choices import ChoiceList
from desktop.context import AppContext
from desktop.jobs import Change, run_job
from desktop.pages import SPACING, Page
from desktop.remote_devices import RemoteDevicesBox
from models.settings import SettingInfo, Settings, describe_settings, load_settings, update_settings

log = logging.getLogger(__name__)

# Settings whose values form a set are chosen, not typed: a typo ("EURO", "eur ") would show in every report.
CURRENCIES = ("EUR", "USD", "GBP", "CHF", "JPY", "CNY", "INR", "CAD", "AUD", "NZD", "SEK", "NOK", "DKK", "PLN", "CZK",
              "HUF", "BRL", "MXN", "KRW", "SGD", "HKD", "ZAR", "TRY")
CHOICES: dict[str, tuple[str, ...]] = {"currency": CURRENCIES}



class SettingsPage(Page):
    name = "settings"

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.settings: Settings = load_settings()
        self.editors: dict[str, QWidget] = {}
        content = QWidget()
        content.setMaximumWidth(880)  # a form wider than this is harder to read, not easier
        column = QVBoxLayout(content)
        column.setSpacing(SPACING)
        column.setContentsMargins(0, 0, SPACING, 0)
        # The remote devices have their own box (a list with checks), not one editor.
        infos = [info for info in describe_settings(self.settings) if info.name != "rpc_endpoints"]
        column.addWidget(self._costs_box([info for info in infos if not info.name.startswith("bench_")]))
        column.addWidget(self._bench_box([info for info in infos if info.name.startswith("bench_")]))
        self.remote = RemoteDevicesBox(ctx)
        column.addWidget(self.remote)
        column.addWidget(self._token_box())
        column.addWidget(self._folders_box())
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(content)
        self.body.addWidget(scroll, 1)
        self.saved = QLabel(" ".join(self.settings.warnings))
        self.saved.setObjectName("muted")
        self.body.addWidget(self.saved)
        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(400)  # one write after a burst of spin-box clicks
        self._save_timer.timeout.connect(self.save)

    # -- costs and defaults, from the core's own descriptions --
    def _costs_box(self, infos: list[SettingInfo]) -> QGroupBox:
        box = QGroupBox("Costs and defaults")
        form = QFormLayout(box)
        form.setHorizontalSpacing(SPACING * 2)
        for info in infos:
            form.addRow(info.label, self._editor(info))
        note = QLabel("These figures turn measured speed and energy into a cost per million tokens "
                      "in the HTML report and the comparison.")
        note.setObjectName("muted")
        note.setWordWrap(True)
        form.addRow(note)
        return box

    def _bench_box(self, infos: list[SettingInfo]) -> QGroupBox:
        box = QGroupBox("Benchmark defaults")
        form = QFormLayout(box)
        form.setHorizontalSpacing(SPACING * 2)
        for info in infos:
            form.addRow(info.label, self._editor(info))
        note = QLabel("Where the Benchmark page's settings start. Tick several values to sweep them "
                      "(like llama-bench's comma lists): each combination is one run.")
        note.setObjectName("muted")
        note.setWordWrap(True)
        form.addRow(note)
        return box

    def _editor(self, info: SettingInfo) -> QWidget:
        """The editor for one setting: a choice where the values form a set, a number box for numbers."""
        value = getattr(self.settings, info.name)
        editor: QWidget
        if info.choices:
            editor = ChoiceList(info.choices, multiple=True)
            editor.setText(str(value))
            editor.textEdited.connect(self._changed)
        elif info.name in CHOICES:
            # A value saved by hand in the file that is not in the list is kept as one more choice.
            values = CHOICES[info.name] + (() if value in CHOICES[info.name] else (str(value),))
            editor = ChoiceList(values)
            editor.setText(str(value))
            editor.textEdited.connect(self._changed)
            if info.name == "currency":
                editor.textEdited.connect(self._currency_changed)
        elif isinstance(info.default, str):
            editor = QLineEdit(value)
            editor.textEdited.connect(self._changed)
        elif isinstance(info.default, int) and not isinstance(info.default, bool):
            editor = QSpinBox()
            editor.setRange(int(info.minimum or 0), 1_000_000)
            editor.setValue(int(value))
            editor.valueChanged.connect(self._changed)
        else:
            editor = QDoubleSpinBox()
            editor.setDecimals(4 if "price" in info.name else 2)
            editor.setRange(float(info.minimum or 0), 1e9)
            editor.setValue(float(value))
            editor.valueChanged.connect(self._changed)
        if info.unit and isinstance(editor, (QSpinBox, QDoubleSpinBox)):
            editor.setSuffix(f" {info.unit}")
        if info.name == "default_threads" and isinstance(editor, QSpinBox):
            editor.setSpecialValueText("physical cores")
        editor.setObjectName(f"setting-{info.name}")
        editor.setToolTip(f"{info.label}. Default: {info.default}.")
        self.editors[info.name] = editor
        return editor

    def _changed(self, *_args: Any) -> None:
        self._save_timer.start()

    def _currency_changed(self, currency: str) -> None:
        """The units that name the currency ("EUR/kWh") follow it at once, not after a restart."""
        draft = Settings()
        draft.currency = currency
        for info in describe_settings(draft):
            editor = self.editors.get(info.name)
            if info.unit and isinstance(editor, (QSpinBox, QDoubleSpinBox)):
                editor.setSuffix(f" {info.unit}")

    def read_form(self) -> Settings:
        settings = load_settings()
        for name, editor in self.editors.items():
            if isinstance(editor, (QLineEdit, ChoiceList)):
                setattr(settings, name, editor.text().strip())
            else:
                setattr(settings, name, editor.value())  # type: ignore[attr-defined]
        return settings

    def save(self) -> None:
        from models.paths import settings_path

        form = self.read_form()
        values = {name: getattr(form, name) for name in self.editors}

        # Only this form's settings are written over the file's: the remote devices are saved by their own box.
        def change(settings: Settings) -> None:
            for name, value in values.items():
                setattr(settings, name, value)

        def done(settings: Settings) -> None:
            self.settings = settings
            self.saved.setText(f"Saved to {settings_path()}.")

        run_job(lambda: update_settings(change), on_done=done,
                on_error=lambda error: self.saved.setText(f"Not saved: {error}"))

    # -- Hugging Face token --
    def _token_box(self) -> QGroupBox:
        box = QGroupBox("Hugging Face token")
        layout = QVBoxLayout(box)
        self.token_state = QLabel()
        self.token_state.setWordWrap(True)
        self.token_edit = QLineEdit()
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText("hf_…  (for gated models; kept in huggingface_hub's token file)")
        self.login_button = QPushButton("Save token")
        self.login_button.setToolTip("Check the token with the Hub and store it where every Hugging Face tool "
                                     "finds it (never in Tokenometer's files or logs).")
        self.login_button.clicked.connect(self.login)
        self.logout_button = QPushButton("Remove token")
        self.logout_button.clicked.connect(self.logout)
        row = QHBoxLayout()
        row.addWidget(self.token_edit, 1)
        row.addWidget(self.login_button)
        row.addWidget(self.logout_button)
        layout.addWidget(self.token_state)
        layout.addLayout(row)
        self._show_token_state()
        return box

    def _show_token_state(self, message: str = "") -> None:
        from huggingface_hub import get_token

        has = get_token() is not None
        self.logout_button.setEnabled(has)
        self.token_state.setText(message or ("A token is stored; gated repos you were granted will download."
                                             if has else "No token stored: public models only."))

    def login(self) -> None:
        token = self.token_edit.text().strip()
        if not token:
            self._show_token_state("Paste a token first.")
            return
        self.login_button.setEnabled(False)
        self.token_state.setText("Checking the token with the Hub …")

        def work() -> None:
            from huggingface_hub import login

            login(token=token, add_to_git_credential=False)

        def done(_result: None) -> None:
            self.token_edit.clear()
            self.login_button.setEnabled(True)
            self._show_token_state("Token checked and stored.")

        def failed(error: BaseException) -> None:
            self.login_button.setEnabled(True)
            # The message may quote the Hub's answer, never the token itself.
            self._show_token_state(f"The token was not stored: {str(error).replace(token, '…')}")

        run_job(work, on_done=done, on_error=failed)

    def logout(self) -> None:
        from huggingface_hub import logout

        try:
            logout()
        except Exception as error:  # noqa: BLE001 - e.g. a token set through HF_TOKEN cannot be removed here
            self._show_token_state(f"Could not remove the token: {error}")
            return
        self._show_token_state("Token removed.")

    # -- folders --
    def _folders_box(self) -> QGroupBox:
        from huggingface_hub import constants

        from models.paths import data_dir, models_dir

        box = QGroupBox("Folders")
        layout = QVBoxLayout(box)
        form = QFormLayout()
        for label, path, tip in (
                ("Results and settings", data_dir(), "The results database, settings and partial downloads."),
                ("Downloaded models", Path(constants.HF_HUB_CACHE),
                 "Downloads go to the Hugging Face cache, shared with every other Hugging Face tool."),
                ("Imported and owned models", models_dir(), "Models the app keeps outside the Hugging Face cache.")):
            shown = QLabel(str(path))
            shown.setToolTip(tip)
            shown.setWordWrap(True)
            button = QPushButton("Open")
            button.setToolTip(f"Open {path} in the file manager.")
            button.clicked.connect(lambda _checked=False, p=path: QDesktopServices.openUrl(QUrl.fromLocalFile(str(p))))
            row = QHBoxLayout()
            row.addWidget(shown, 1)
            row.addWidget(button)
            form.addRow(label, row)
        layout.addLayout(form)
        layout.addWidget(QLabel("Model folders the library scans:"))
        self.folder_list = QListWidget()
        self.folder_list.setMaximumHeight(110)
        layout.addWidget(self.folder_list)
        row = QHBoxLayout()
        add = QPushButton("Add folder…")
        add.clicked.connect(lambda: self.add_folder())
        remove = QPushButton("Remove")
        remove.clicked.connect(self.remove_folder)
        row.addWidget(add)
        row.addWidget(remove)
        row.addStretch(1)
        layout.addLayout(row)
        self._list_folders()
        # The Library page adds folders too: the list follows every change to the library's folders.
        self.ctx.watch(Change.LIBRARY, self._list_folders, owner=box)
        return box

    def _list_folders(self) -> None:
        from models.hub.library import folders

        self.folder_list.clear()
        self.folder_list.addItems([str(folder) for folder in folders()])

    def add_folder(self, folder: Path | None = None) -> None:
        from models.hub.library import add_folder

        if folder is None:
            picked = QFileDialog.getExistingDirectory(self, "Add a model folder", str(Path.home()))
            folder = Path(picked) if picked else None
        if folder is None:
            return
        chosen: Path = folder
        self.ctx.change(lambda: add_folder(chosen), changes=Change.LIBRARY)

    def remove_folder(self) -> None:
        from models.hub.library import remove_folder

        item = self.folder_list.currentItem()
        if item is None:
            return
        folder = Path(item.text())
        self.ctx.change(lambda: remove_folder(folder), changes=Change.LIBRARY)


PAGE = SettingsPage
