"""The Benchmark page's choice of where a model runs: this PC, this PC with the remote devices (llama-bench's -rpc,
the servers set in Settings or on the Hardware page), or both to compare."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QWidget

from desktop.context import AppContext
from desktop.remote_devices import remote_devices
from models.text import plural
from models.units import fmt_bytes

log = logging.getLogger(__name__)

LOCAL, REMOTE, BOTH = "local", "remote", "both"


class RpcChoice(QWidget):
    """Where the benchmark runs; `pools()` is the sweep's rpc list (each entry one pool, "" for this PC alone)."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = remote_devices(ctx)
        self.combo = QComboBox()
        self.combo.setObjectName("rpcChoice")
        self.combo.addItem("This PC", LOCAL)
        self.combo.addItem("This PC + remote devices (RPC)", REMOTE)
        self.combo.addItem("Both, to compare", BOTH)
        self.combo.setToolTip("Remote devices: the model's layers are split across this PC and the RPC servers set "
                              "in Settings or on the Hardware page, as llama-bench -rpc does. Each result records "
                              "the pool: servers, devices, memory, round trip and bandwidth.")
        self.note = QLabel()
        self.note.setObjectName("muted")
        self.note.setWordWrap(True)
        caption = QLabel("Run on")
        caption.setBuddy(self.combo)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(caption)
        row.addWidget(self.combo)
        row.addWidget(self.note, 1)
        self.state.changed.connect(self.refresh)
        self.combo.currentIndexChanged.connect(lambda _index: self.refresh())
        self.refresh()

    def choose(self, where: str) -> None:
        self.combo.setCurrentIndex(max(self.combo.findData(where), 0))

    def refresh(self) -> None:
        endpoints = self.state.endpoints
        # Without a server the remote choices would run nothing new: they are offered once one is set.
        for index in (1, 2):
            item = self.combo.model().item(index)  # type: ignore[attr-defined]
            item.setEnabled(bool(endpoints))
        if not endpoints and self.combo.currentData() != LOCAL:
            self.choose(LOCAL)
        if not endpoints:
            self.note.setText("No remote devices set (Settings or Hardware page).")
            return
        down = self.state.unreachable()
        text = f"{plural(len(endpoints), 'server')}: {', '.join(endpoints)}"
        if down:
            text += f" ({', '.join(down)} not reachable at the last check)"
        self.note.setText(text if self.combo.currentData() != LOCAL else f"Remote devices set: {text}")

    def pools(self) -> list[str]:
        """llama-bench's -rpc list: [""] for this PC, [servers] for the pool, ["", servers] for both."""
        pool = self.state.pool()
        where = self.combo.currentData()
        if not pool or where == LOCAL:
            return [""]
        return [pool] if where == REMOTE else ["", pool]


def pool_lines(results: Sequence[Any]) -> list[str]:
    """The pool a run used, as its first result recorded it just before the test; [] for this PC alone."""
    topology = next((r.topology for r in results if getattr(r, "topology", None)), None)
    if not topology:
        return []
    lines = ["Pool (checked just before the test):"]
    for server in topology.get("endpoints", []):
        devices = ", ".join(f"{d.get('name') or 'device ' + str(d.get('index'))} {fmt_bytes(d.get('memory_free', 0))}"
                            f" free of {fmt_bytes(d.get('memory_total', 0))}" for d in server.get("devices", []))
        link = f"round trip {server.get('rtt_ms', 0):.2f} ms"
        if server.get("transfer_bytes"):
            link += f", ↑ {server.get('upload_mb_s', 0):.0f} ↓ {server.get('download_mb_s', 0):.0f} MB/s"
        lines.append(f"  {server.get('endpoint')}: RPC v{server.get('version')}, {devices}; {link}")
    local = ", ".join(str(d.get("name", "?")) for d in topology.get("local_devices", []))
    if local:
        lines.append(f"  this PC: {local}")
    return lines
