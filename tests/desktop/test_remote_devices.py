"""Remote devices in the app: added, checked and removed on the Settings and Hardware pages against real RPC servers
on 127.0.0.1 (started through `tokenometer rpc-server`), the Benchmark page's pool option, Discover's pool badge."""

from __future__ import annotations

import socket
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QGroupBox

from desktop.bench_queue import DONE, RUNNING
from desktop.discover_columns import badge as _badge
from desktop.remote_devices import CHECKING, REACHABLE, UNREACHABLE
from models.settings import load_settings
from tests.models.machine.test_rpc import _free_port, servers


def _box(window, qtbot, page: str):  # type: ignore[no-untyped-def]
    box = window.page(page).remote
    qtbot.waitUntil(lambda: box.state.loaded, timeout=10_000)
    return box


def _cell(box, row: int, column: int, role: int = Qt.ItemDataRole.DisplayRole) -> str:  # type: ignore[no-untyped-def]
    return str(box.table.data(box.table.index(row, column), role))


def test_bad_endpoint_text_is_refused_with_the_reason(window, qtbot, qtmodeltester) -> None:
    box = _box(window, qtbot, "settings")
    assert "no authentication and no encryption" in box.warning.text()
    for text, reason in (("10.0.0.2", "'10.0.0.2' has no port; write HOST:PORT, e.g. 10.0.0.2:50052"),
                         ("[::1]:50052", "IPv6 addresses are not supported by llama.cpp's RPC client"),
                         ("box.lan:99999", "the port must be a number from 1 to 65535"),
                         ("<b>x</b>:1", "is not a host name or IPv4 address")):
        box.edit.setText(text)
        qtbot.mouseClick(box.add_button, Qt.MouseButton.LeftButton)
        assert reason in box.error.text(), box.error.text()
        assert box.edit.text() == text  # kept for correcting, not cleared
    assert box.table.rowCount() == 0 and load_settings().rpc_endpoints == ()
    dead = f"127.0.0.1:{_free_port()}"
    box.edit.setText(dead)
    qtbot.mouseClick(box.add_button, Qt.MouseButton.LeftButton)
    assert box.error.text() == "" and box.edit.text() == ""
    box.edit.setText(f" {dead} ")
    qtbot.mouseClick(box.add_button, Qt.MouseButton.LeftButton)
    assert f"{dead} is already in the list." in box.error.text()
    # The refusal belongs to the box it was typed in: the Hardware page's box lists the server, not the refusal.
    other = _box(window, qtbot, "hardware")
    assert other.error.text() == "" and [r.endpoint for r in other.table.rows] == [dead]
    qtbot.keyClicks(box.edit, "x")
    assert box.error.text() == ""  # editing the text takes the refusal away
    qtbot.waitUntil(lambda: load_settings().rpc_endpoints == (dead,), timeout=10_000)
    qtbot.waitUntil(lambda: _cell(box, 0, 1) == UNREACHABLE, timeout=10_000)
    qtmodeltester.check(box.table)
    # The page's own settings are saved over the file's, never over the servers' list.
    window.page("settings").editors["hardware_cost"].setValue(1234.0)
    qtbot.waitUntil(lambda: load_settings().hardware_cost == 1234.0, timeout=10_000)
    assert load_settings().rpc_endpoints == (dead,)


def test_a_server_that_does_not_answer_shows_not_reachable_without_hanging_the_gui(window, qtbot,
                                                                                   monkeypatch) -> None:
    import threading

    import models.machine.rpc_known as known

    threads: list[str] = []  # where the real check ran
    real_check = known.check_endpoints
    monkeypatch.setattr(known, "check_endpoints",
                        lambda *a, **k: threads.append(threading.current_thread().name) or real_check(*a, **k))
    box = _box(window, qtbot, "settings")
    refused = f"127.0.0.1:{_free_port()}"
    with socket.socket() as silent:  # takes connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        quiet = f"127.0.0.1:{silent.getsockname()[1]}"
        ticks: list[int] = []
        timer = QTimer()
        timer.timeout.connect(lambda: ticks.append(1))
        timer.start(50)
        box.edit.setText(quiet)
        qtbot.mouseClick(box.add_button, Qt.MouseButton.LeftButton)
        assert box.state.add(refused) == ""
        assert _cell(box, 0, 1) == CHECKING  # the check runs in the background
        qtbot.waitUntil(lambda: _cell(box, 1, 1) == UNREACHABLE, timeout=10_000)
        assert "nothing is listening there (connection refused)" in _cell(box, 1, 1, Qt.ItemDataRole.ToolTipRole)
        assert _cell(box, 1, 2) == "nothing is listening there (connection refused)"  # why, in the Memory column
        qtbot.waitUntil(lambda: _cell(box, 0, 1) == UNREACHABLE, timeout=20_000)
        timer.stop()
    # The probe waited its 5 s for a handshake; the event loop kept running all along (50 ms ticks).
    assert len(ticks) >= 60, len(ticks)
    assert "no answer to the handshake within 5 s" in _cell(box, 0, 1, Qt.ItemDataRole.ToolTipRole)
    assert _cell(box, 0, 2) == "no answer to the handshake within 5 s"
    # Each check ran on a thread of its own, never in the pool that runs the pages' other jobs: a server that does
    # not answer holds its check for seconds.
    assert threads == ["rpc-check", "rpc-check"]
    # The Hardware page shows the same list.
    other = _box(window, qtbot, "hardware")
    assert [r.endpoint for r in other.table.rows] == [quiet, refused]
    assert [r.state for r in other.table.rows] == [UNREACHABLE, UNREACHABLE]


def test_a_real_server_is_listed_with_its_memory_and_removed(window, qtbot) -> None:
    from models.machine.rpc import probe_endpoint
    from models.units import fmt_bytes

    box = _box(window, qtbot, "hardware")
    with servers(1) as (server,):
        device = probe_endpoint(server.endpoint, transfer_bytes=0).devices[0]
        box.edit.setText(server.endpoint)
        qtbot.keyClick(box.edit, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: _cell(box, 0, 1) == REACHABLE, timeout=20_000)
        assert _cell(box, 0, 2).endswith(f" free of {fmt_bytes(device.memory_total)}")
        assert " ms · ↑ " in _cell(box, 0, 3) and "RPC protocol v7." in _cell(box, 0, 1, Qt.ItemDataRole.ToolTipRole)
        qtbot.waitUntil(lambda: load_settings().rpc_endpoints == (server.endpoint,), timeout=10_000)
    # Detecting again rebuilds the facts, never the servers' list.
    page = window.page("hardware")
    qtbot.waitUntil(lambda: page.refresh_button.isEnabled(), timeout=120_000)
    qtbot.mouseClick(page.refresh_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.refresh_button.isEnabled(), timeout=120_000)
    assert box.table.rowCount() == 1 and _cell(box, 0, 1) == REACHABLE
    qtbot.waitUntil(lambda: [b.title() for b in page.findChildren(QGroupBox)].count("Machine") == 1)  # no stale boxes
    qtbot.mouseClick(box.check_button, Qt.MouseButton.LeftButton)  # the server is gone now
    qtbot.waitUntil(lambda: _cell(box, 0, 1) == UNREACHABLE, timeout=20_000)
    box.view.selectRow(0)
    qtbot.mouseClick(box.remove_button, Qt.MouseButton.LeftButton)
    assert box.table.rowCount() == 0
    qtbot.waitUntil(lambda: load_settings().rpc_endpoints == (), timeout=10_000)


def test_the_benchmark_page_runs_on_the_remote_devices_and_this_pc(window, qtbot, starter_model: Path) -> None:
    page = window.page("benchmark")
    qtbot.waitUntil(lambda: page.models.count() > 0, timeout=10_000)
    choice = page.rpc_choice
    assert not choice.combo.model().item(1).isEnabled()  # no server set: only this PC
    assert page.sweep([starter_model]).rpc == [""]
    with servers(1) as (server,):
        assert choice.state.add(server.endpoint) == ""
        qtbot.waitUntil(lambda: choice.combo.model().item(1).isEnabled(), timeout=10_000)
        choice.choose("both")
        assert server.endpoint in choice.note.text()
        page.set_preset("Custom")
        for key, value in (("n_prompt", "16"), ("n_gen", "4"), ("repetitions", "1"), ("n_threads", "1"),
                           ("n_gpu_layers", "20"), ("n_depth", "0")):
            page.fields[key].setText(value)
        items = page.run_selected()
        assert [i.job.params.rpc for i in items] == ["", server.endpoint], page.error.text()
        assert f"RPC {server.endpoint}" in items[1].settings and "RPC" not in items[0].settings
        qtbot.waitUntil(lambda: all(i.state not in ("queued", RUNNING) for i in items), timeout=300_000)
    local, pooled = items
    assert local.state == DONE and pooled.state == DONE, (local.message, pooled.message)
    assert all(r.rpc == "" and not r.topology for r in local.results)
    for result in pooled.results:
        assert result.status == "ok" and result.avg_ts > 0 and result.rpc == server.endpoint
        assert [e["endpoint"] for e in result.topology["endpoints"]] == [server.endpoint]
        assert f"RPC0[{server.endpoint}]:model" in result.buffers, result.buffers
    # The run's log names the pool it used: the server, its memory and the link, as measured before the test.
    page.queue_view.selectRow(1)
    qtbot.waitUntil(lambda: "Pool (checked just before the test):" in page.detail.toPlainText())
    assert f"  {server.endpoint}: RPC v7." in page.detail.toPlainText()
    assert " free of " in page.detail.toPlainText() and "round trip" in page.detail.toPlainText()
    page.queue_view.selectRow(0)
    qtbot.waitUntil(lambda: "State:" in page.detail.toPlainText() and "Pool" not in page.detail.toPlainText())


def test_discover_badge_fits_the_pool_from_the_last_check(window, qtbot, hub, starter_model: Path) -> None:
    hub.add_repo("acme/Smol-GGUF", {"smol-Q4_1.gguf": starter_model})
    state = _box(window, qtbot, "settings").state
    with servers(2) as (one, two):
        state.add(one.endpoint)
        state.add(two.endpoint)
        qtbot.waitUntil(lambda: [r.state for r in state.rows()] == [REACHABLE, REACHABLE], timeout=20_000)
    qtbot.waitUntil(lambda: load_settings().rpc_endpoints == (one.endpoint, two.endpoint), timeout=10_000)
    # The servers are gone: the badge comes from their memory as last checked, no server is asked per file.
    qtbot.keyClick(window, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    page = window.pages["discover"]
    qtbot.waitUntil(lambda: page.repos.rowCount() == 1, timeout=20_000)
    page.repo_view.selectRow(0)
    qtbot.waitUntil(lambda: page.files.rowCount() == 1 and _badge(page.files.row(0)) != "…", timeout=120_000)
    row = page.files.row(0)
    assert _badge(row) == "fits across this PC + 2 remote", row.fit_error
    tip = page.files.data(page.files.index(0, 3), Qt.ItemDataRole.ToolTipRole)
    free = [state.checks[e].memory_free for e in (one.endpoint, two.endpoint)]
    assert [d.memory_free for d in row.pool.estimate.devices[1:]] == free
    assert "RPC0: weights" in tip and "RPC1: weights" in tip and "This PC alone:" in tip
    assert f"{one.endpoint} runs on this machine" in tip
    # Taking the servers off the list judges the files again, for this PC alone.
    state.remove(one.endpoint)
    state.remove(two.endpoint)
    qtbot.waitUntil(lambda: page.files.row(0).pool is None and _badge(page.files.row(0)) != "…", timeout=60_000)
    assert _badge(page.files.row(0)) in ("CPU only", "fully on GPU", "partial offload")
    # A server set but not answering: the badge is this PC's, and the tooltip says why the pool is not counted.
    dead = f"127.0.0.1:{_free_port()}"
    assert state.add(dead) == ""
    qtbot.waitUntil(lambda: state.rows()[0].state == UNREACHABLE, timeout=20_000)
    qtbot.waitUntil(lambda: page.files.row(0).pool_note != "", timeout=60_000)
    row = page.files.row(0)
    assert row.pool is None and _badge(row) in ("CPU only", "fully on GPU", "partial offload")
    tip = page.files.data(page.files.index(0, 3), Qt.ItemDataRole.ToolTipRole)
    assert "none is counted (not reachable at the last check, or never checked): this PC alone" in tip
