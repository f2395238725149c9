"""Remote devices (llama.cpp RPC servers): the app's list of them with each one's last check, and the box that shows
it, adds, removes and checks them (Settings and Hardware pages); every check runs off the GUI thread."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from desktop.context import AppContext
from desktop.jobs import run_job
from desktop.tables import Column, RowTable, table_view
from models.machine.rpc import DEFAULT_PORT, MAX_SERVERS, RpcError, parse_endpoint
from models.machine.rpc_known import NO_AUTH_WARNING, EndpointCheck, PoolFit
from models.units import fmt_bytes

log = logging.getLogger(__name__)

REACHABLE, UNREACHABLE, CHECKING, UNCHECKED = "reachable", "not reachable", "checking …", "not checked yet"


@dataclass
class EndpointRow:
    """One configured server as the box shows it."""

    endpoint: str
    check: EndpointCheck | None
    checking: bool = False

    @property
    def state(self) -> str:
        if self.checking:
            return CHECKING
        if self.check is None:
            return UNCHECKED
        return REACHABLE if self.check.reachable else UNREACHABLE


def _when(check: EndpointCheck | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(check.checked_at)) if check is not None else ""


def _link(row: EndpointRow) -> str:
    probe = row.check.probe if row.check is not None else None
    if probe is None:
        return ""
    text = f"{probe.rtt_ms:.2f} ms"
    if probe.transfer_bytes:
        text += f" · ↑ {probe.upload_mb_s:.0f} ↓ {probe.download_mb_s:.0f} MB/s"
    return text


def _state_tip(row: EndpointRow) -> str:
    check = row.check
    if check is None:
        return "Press Check to ask the server for its devices and memory."
    if not check.reachable:
        return f"{check.error}\nChecked {_when(check)}."
    probe = check.probe
    version = f"RPC protocol v{probe.version}; " if probe is not None else ""
    return f"{version}checked {_when(check)}."


def _memory(row: EndpointRow) -> str:
    check = row.check
    if check is None:
        return ""
    # The reason's first clause ("RPC server HOST:PORT: nothing is listening there ...") without the endpoint.
    return check.memory_text() if check.reachable else check.error.split(": ", 1)[-1].split(". ")[0].rstrip(".")


_COLORS = {REACHABLE: "#2e7d32", UNREACHABLE: "#c62828"}
# Discover's badge for the pool (models.machine.rpc_known.PoolFit.verdict), in the colours of its local badges.
POOL_COLORS = {"pool": "#2e7d32", "pool_partial": "#b26a00", "no_fit": "#c62828"}


def pool_tip(pool: PoolFit) -> list[str]:
    """Discover's tooltip for the pool: the verdict, each device's share against its memory as last checked."""
    lines = [pool.summary]
    if pool.estimate is not None:
        for dev in pool.estimate.devices:
            lines.append(f"{dev.name}: weights {fmt_bytes(dev.weights)} · KV {fmt_bytes(dev.kv)} · compute "
                         f"{fmt_bytes(dev.compute)} = {fmt_bytes(dev.total)} of "
                         f"{fmt_bytes(max(dev.memory_free - dev.reserve, 0))} usable")
    lines += pool.notes[:4]
    lines += ["", "Remote memory as last checked (Settings or Hardware page: Check)."]
    return lines + ["", "This PC alone:"]

COLUMNS: list[Column[EndpointRow]] = [
    Column("Server", lambda r: r.endpoint, tip="HOST:PORT of a llama.cpp RPC server (tokenometer rpc-server)."),
    Column("State", lambda r: r.state, cell_tip=_state_tip,
           color=lambda r: QColor(_COLORS[r.state]) if r.state in _COLORS else None,
           tip="Whether the server answered llama.cpp's RPC handshake at the last check (hover for why not)."),
    Column("Memory", _memory, cell_tip=lambda r: r.check.error if r.check is not None else "",
           tip="Free and total memory of the server's devices, as the server reports them; for a server not "
               "reachable, why."),
    Column("Round trip · bandwidth", _link,
           tip="Median round trip of small requests, and upload/download rate of 1 MiB transfers, at the last "
               "check."),
    Column("Checked", lambda r: _when(r.check), tip="When the server was last asked."),
]


class RemoteDevices(QObject):
    """The configured servers (in the settings) and their last checks (kept on disk), shared by every page.

    `changed` fires on the GUI thread whenever the list or a check changes."""

    changed = Signal()
    _checked = Signal(list, object)  # (endpoints, their checks or the error), from the checking thread

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.endpoints: list[str] = []
        self.checks: dict[str, EndpointCheck] = {}
        self.checking: set[str] = set()
        self.loaded = False
        self._checked.connect(self._deliver)  # queued: delivered on the GUI thread
        self.error = ""  # why the last save or check failed, in words ("" when it did not)
        self._load()

    def _load(self) -> None:
        def read() -> tuple[list[str], dict[str, EndpointCheck]]:
            from models.machine.rpc_known import load_checks
            from models.settings import load_settings

            return list(load_settings().rpc_endpoints), load_checks()

        def done(found: tuple[list[str], dict[str, EndpointCheck]]) -> None:
            endpoints, checks = found
            # One added while the file was read is kept (its save is on its way).
            self.endpoints = endpoints + [e for e in self.endpoints if e not in endpoints]
            self.checks = {**checks, **self.checks}
            self.loaded = True
            self.changed.emit()

        run_job(read, on_done=done, on_error=lambda error: self._refused(f"Remote devices not read: {error}"))

    def rows(self) -> list[EndpointRow]:
        return [EndpointRow(e, self.checks.get(e), e in self.checking) for e in self.endpoints]

    def pool(self) -> str:
        """The configured servers as llama-bench's -rpc takes them ("" for none)."""
        return ",".join(self.endpoints)

    def unreachable(self) -> list[str]:
        return [e for e in self.endpoints if e in self.checks and not self.checks[e].reachable]

    def _refused(self, message: str) -> None:
        self.error = message
        self.changed.emit()

    def add(self, text: str) -> str:
        """Add HOST:PORT (then check it); "" when added, else why the text was refused (nothing changed)."""
        try:
            endpoint = str(parse_endpoint(text))
        except RpcError as error:
            return str(error)
        if endpoint in self.endpoints:
            return f"{endpoint} is already in the list."
        if len(self.endpoints) >= MAX_SERVERS:
            return f"llama.cpp takes at most {MAX_SERVERS} RPC servers; remove one first."
        self.error = ""
        self._save([*self.endpoints, endpoint], added=endpoint)
        self.check([endpoint])
        return ""

    def remove(self, endpoint: str) -> None:
        if endpoint in self.endpoints:
            self.error = ""
            self._save([e for e in self.endpoints if e != endpoint], removed=endpoint)

    def _save(self, endpoints: list[str], *, added: str = "", removed: str = "") -> None:
        from models.settings import Settings, update_settings

        self.endpoints = endpoints  # shown at once; the file follows
        self.changed.emit()

        # Each save writes the list as it is when the save runs, so saves that run out of order still leave the
        # newest list; before the file was read, the change is applied to the file's own list instead.
        def change(settings: Settings) -> None:
            if self.loaded:
                settings.rpc_endpoints = tuple(self.endpoints)
                return
            kept = [e for e in settings.rpc_endpoints if e != removed]
            settings.rpc_endpoints = tuple(kept + ([added] if added and added not in kept else []))

        run_job(lambda: update_settings(change), on_done=lambda _s: None,
                on_error=lambda error: self._refused(f"Not saved: {error}"))

    def check(self, endpoints: Sequence[str] | None = None) -> None:
        """Ask the servers (all configured by default) for their devices and memory, each in parallel and off the
        GUI thread; every wait has a timeout, so a server that does not answer ends as "not reachable"."""
        from models.machine.rpc_known import check_endpoints

        wanted = [e for e in (self.endpoints if endpoints is None else endpoints) if e not in self.checking]
        if not wanted:
            return
        self.checking.update(wanted)
        self.changed.emit()

        # A thread of its own, not the shared pool: a server that never answers holds its check for the probe's
        # timeouts (seconds), and the pages' other jobs (Discover's fit badges, saving) must not wait behind it.
        def work() -> None:
            try:
                answer: object = check_endpoints(wanted)
            except Exception as error:  # noqa: BLE001 - said in the box, never lost on a thread
                answer = error
            try:
                self._checked.emit(wanted, answer)
            except RuntimeError:  # the window closed meanwhile: nobody is left to tell
                log.debug("an RPC check ended after its window closed")

        threading.Thread(target=work, name="rpc-check", daemon=True).start()

    def _deliver(self, wanted: list[str], answer: object) -> None:
        self.checking.difference_update(wanted)
        if isinstance(answer, BaseException):
            self._refused(f"Check failed: {answer}")
            return
        checks = cast(list[EndpointCheck], answer)
        self.checks.update({c.endpoint: c for c in checks})
        self.changed.emit()


def remote_devices(ctx: AppContext) -> RemoteDevices:
    """The window's one RemoteDevices, created on first use (a child of the context, so it goes with it)."""
    found = getattr(ctx, "_remote_devices", None)
    if found is None:
        found = RemoteDevices(ctx)
        ctx._remote_devices = found  # type: ignore[attr-defined]
    return found


class RemoteDevicesBox(QGroupBox):
    """Add, remove and check RPC servers; each listed with its reachability and memory as the server reports it."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__("Remote devices (llama.cpp RPC servers)", parent)
        self.setObjectName("remoteDevices")
        self.state = remote_devices(ctx)
        layout = QVBoxLayout(self)
        intro = QLabel("Other machines whose memory and compute a benchmark can use: start `tokenometer rpc-server "
                       "--host ADDRESS` on each, add it here, then pick \"remote devices\" on the Benchmark page. "
                       "Discover's fit badge counts their memory as last checked.")
        intro.setWordWrap(True)
        intro.setObjectName("muted")
        self.warning = QLabel(f"Warning: {NO_AUTH_WARNING}")
        self.warning.setObjectName("notice")
        self.warning.setWordWrap(True)
        self.table = RowTable(COLUMNS, parent=self)
        self.view = table_view(self.table)
        self.view.setMinimumHeight(110)
        self.view.setMaximumHeight(180)
        self.edit = QLineEdit()
        self.edit.setObjectName("rpcEndpoint")
        self.edit.setPlaceholderText(f"HOST:PORT, e.g. 192.168.1.20:{DEFAULT_PORT}")
        self.edit.returnPressed.connect(self.add)
        self.edit.textEdited.connect(lambda _text: self._say(""))
        self._refusal = ""  # why this box's text was refused; the shared list's own failures show in every box
        self.add_button = QPushButton("Add")
        self.add_button.clicked.connect(self.add)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Take the selected server off the list.")
        self.remove_button.clicked.connect(self.remove_selected)
        self.check_button = QPushButton("Check")
        self.check_button.setToolTip("Ask every server for its devices and memory, round trip and bandwidth "
                                     "(at most a few seconds each, in the background).")
        self.check_button.clicked.connect(lambda: self.state.check())
        self.error = QLabel()
        self.error.setObjectName("formError")
        self.error.setStyleSheet("color: #d9534f;")
        self.error.setWordWrap(True)
        self.error.setTextFormat(Qt.TextFormat.PlainText)  # the user's text is quoted in it, never markup
        row = QHBoxLayout()
        row.addWidget(self.edit, 1)
        row.addWidget(self.add_button)
        row.addWidget(self.remove_button)
        row.addWidget(self.check_button)
        layout.addWidget(intro)
        layout.addWidget(self.warning)
        layout.addWidget(self.view)
        layout.addLayout(row)
        layout.addWidget(self.error)
        self.state.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        selected = self.selected()
        rows = self.state.rows()
        self.table.set_rows(rows)
        if selected in self.state.endpoints:
            self.view.selectRow(self.state.endpoints.index(selected))
        self.view.resizeColumnsToContents()
        self.error.setText(self._refusal or self.state.error)
        self.check_button.setEnabled(bool(rows) and any(not r.checking for r in rows))
        self.remove_button.setEnabled(bool(rows))

    def selected(self) -> str | None:
        picked = self.view.selectionModel().selectedRows()
        return self.table.row(picked[0].row()).endpoint if picked else None

    def _say(self, refusal: str) -> None:
        self._refusal = refusal
        self.error.setText(refusal or self.state.error)

    def add(self) -> None:
        refusal = self.state.add(self.edit.text())
        self._say(refusal)
        if not refusal:
            self.edit.clear()

    def remove_selected(self) -> None:
        endpoint = self.selected()
        if endpoint is None and len(self.state.endpoints) == 1:
            endpoint = self.state.endpoints[0]
        if endpoint is not None:
            self.state.remove(endpoint)
