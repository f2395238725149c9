"""Discover, Downloads and Library against the loopback Hub: search, fit badge, download, pause, resume, import."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

from desktop.discover_columns import badge as _badge
from models.hub.download import DownloadRequest, DownloadState

CTRL = Qt.KeyboardModifier.ControlModifier


def test_search_as_you_type_shows_files_with_fit_and_downloads(window, qtbot, hub, tiny_gguf: Path,
                                                              qtmodeltester) -> None:
    hub.add_repo("acme/Tiny-GGUF", {"tiny-Q4_K_M.gguf": tiny_gguf, "README.md": b"hi"}, downloads=10)
    hub.add_repo("acme/Other-GGUF", {"other-Q8_0.gguf": tiny_gguf}, downloads=5)
    qtbot.keyClick(window, Qt.Key.Key_1, CTRL)
    page = window.pages["discover"]
    qtbot.waitUntil(lambda: page.repos.rowCount() == 2, timeout=20_000)  # the top repos before any typing
    before = page.searches
    qtbot.keyClicks(page.search, "tiny")
    qtbot.waitUntil(lambda: page.repos.rowCount() == 1, timeout=20_000)
    assert page.searches == before + 1  # four keystrokes, one search: the typing was debounced
    assert page.repos.row(0).repo_id == "acme/Tiny-GGUF"
    qtmodeltester.check(page.repos)
    page.repo_view.selectRow(0)
    qtbot.waitUntil(lambda: page.files.rowCount() == 1, timeout=20_000)
    row = page.files.row(0)
    assert row.model.quant == "Q4_K_M"
    assert page.files.data(page.files.index(0, 5)) == "sha256"  # after Fit here and Speed here
    qtbot.waitUntil(lambda: _badge(page.files.row(0)) != "…", timeout=120_000)
    assert _badge(page.files.row(0)) in ("CPU only", "fully on GPU", "partial offload", "won't fit")
    assert "Weights" in page.files.data(page.files.index(0, 3), Qt.ItemDataRole.ToolTipRole)
    # The predicted speed beside the badge (the bandwidth is measured once, in the background).
    assert page.files.data(page.files.index(0, 4)).startswith("≈ ")
    assert "Generation (tg128) ≈ " in page.files.data(page.files.index(0, 4), Qt.ItemDataRole.ToolTipRole)
    qtmodeltester.check(page.files)
    page.file_view.selectRow(0)
    qtbot.mouseClick(page.download_button, Qt.MouseButton.LeftButton)
    assert "Queued" in page.status.text()
    qtbot.keyClick(window, Qt.Key.Key_2, CTRL)
    downloads = window.pages["downloads"]
    qtbot.waitUntil(lambda: downloads.table.rowCount() == 1 and downloads.table.row(0).state == DownloadState.DONE,
                    timeout=30_000)
    assert downloads.table.data(downloads.table.index(0, 1)).startswith("done")
    qtmodeltester.check(downloads.table)
    qtbot.keyClick(window, Qt.Key.Key_3, CTRL)
    library = window.pages["library"]
    qtbot.waitUntil(lambda: any(e.path.name == "tiny-Q4_K_M.gguf" for e in library.table.rows), timeout=20_000)


def test_downloads_pause_resume_and_show_errors_in_line(window, qtbot, hub, big_gguf: Path, tiny_gguf: Path) -> None:
    from models.hub.repos import repo_files

    hub.faults.throttle_bps = 200_000  # slow enough to press Pause in the middle
    hub.add_repo("acme/Big-GGUF", {"big-Q8_0.gguf": big_gguf})
    repo = repo_files("acme/Big-GGUF")
    window.show_page("downloads")
    page = window.pages["downloads"]
    job = window.ctx.downloads().add(DownloadRequest(repo.repo_id, repo.models[0].files, revision=repo.commit))
    qtbot.waitUntil(lambda: job.state == DownloadState.RUNNING and job.progress and job.progress.bytes_done > 0,
                    timeout=20_000)
    page.view.selectRow(0)
    qtbot.waitUntil(lambda: page.pause_button.isEnabled() and not page.resume_button.isEnabled(), timeout=10_000)
    qtbot.mouseClick(page.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: job.state == DownloadState.PAUSED, timeout=20_000)
    assert page.table.data(page.table.index(0, 1)).startswith("paused")
    # The buttons follow the queue's report, which reaches the GUI thread just after the state changes.
    qtbot.waitUntil(page.resume_button.isEnabled, timeout=10_000)
    hub.faults.throttle_bps = None
    qtbot.mouseClick(page.resume_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: job.state == DownloadState.DONE, timeout=30_000)
    # A file the Hub refuses: the reason shows in the row, and the queue goes on.
    hub.add_repo("acme/Broken-GGUF", {"broken-Q4_0.gguf": tiny_gguf})
    broken = repo_files("acme/Broken-GGUF")
    hub.faults.fail.append(["broken-Q4_0.gguf", 403, 100])
    failed = window.ctx.downloads().add(DownloadRequest(broken.repo_id, broken.models[0].files, revision=broken.commit))
    qtbot.waitUntil(lambda: failed.state == DownloadState.FAILED and page.table.rowCount() == 2, timeout=30_000)
    qtbot.waitUntil(lambda: bool(page.table.data(page.table.index(1, 4))), timeout=10_000)


def test_library_imports_benchmarks_and_forgets(window, qtbot, tiny_gguf: Path, tmp_path: Path,
                                               qtmodeltester) -> None:
    qtbot.keyClick(window, Qt.Key.Key_3, CTRL)
    page = window.pages["library"]
    qtbot.waitUntil(lambda: page.table.rowCount() >= 1, timeout=20_000)
    assert page.table.row(0).source == "starter"
    page.import_file(tiny_gguf)
    qtbot.waitUntil(lambda: any(e.path == tiny_gguf.resolve() for e in page.table.rows), timeout=20_000)
    entry = next(e for e in page.table.rows if e.path == tiny_gguf.resolve())
    assert entry.header is not None and entry.header.architecture == "llama"
    qtmodeltester.check(page.table)
    # A text file is refused as it is given, in words, not later at run time with "starts with b'hell'".
    rows_before = page.table.rowCount()
    not_gguf = tmp_path / "notes.txt"
    not_gguf.write_text("hello, these are my notes")
    page.import_file(not_gguf)
    qtbot.waitUntil(lambda: page.error.isVisibleTo(page), timeout=20_000)
    assert page.error.text() == ("Not imported: “notes.txt” is a text file (it begins “hello, these are my notes”), "
                                 "not a GGUF model. Pick a .gguf file: a model downloaded from the Hub or converted "
                                 "with llama.cpp.")
    assert "b'hell'" not in page.error.text() and "b'hell'" in page.error.toolTip()  # the detail is kept
    qtbot.wait(200)
    assert page.table.rowCount() == rows_before and all(e.path.name != "notes.txt" for e in page.table.rows)
    page.select_path(entry.path)
    assert page.bench_button.isEnabled() and page.delete_button.isEnabled()
    qtbot.mouseClick(page.bench_button, Qt.MouseButton.LeftButton)
    assert window.current_page() == "benchmark"
    assert window.pages["benchmark"].picked() == [entry.path]
    window.show_page("library")
    page.select_path(entry.path)
    page.delete_selected(confirm=False)
    qtbot.waitUntil(lambda: all(e.path != entry.path for e in page.table.rows), timeout=20_000)
    assert tiny_gguf.exists()  # an imported file is only dropped from the list, never deleted


def test_a_download_stopped_by_quitting_is_offered_again(window, qtbot, hub, big_gguf: Path,
                                                        qsettings_path: Path) -> None:
    from PySide6.QtCore import QSettings

    from desktop.main_window import MainWindow
    from models.hub.repos import repo_files

    hub.faults.throttle_bps = 200_000
    hub.add_repo("acme/Big-GGUF", {"big-Q8_0.gguf": big_gguf})
    repo = repo_files("acme/Big-GGUF")
    job = window.ctx.downloads().add(DownloadRequest(repo.repo_id, repo.models[0].files, revision=repo.commit))
    qtbot.waitUntil(lambda: job.progress is not None and job.progress.bytes_done > 200_000, timeout=20_000)
    window.close()  # quitting pauses the transfer and keeps the partial file
    hub.faults.throttle_bps = None
    again = MainWindow(settings=QSettings(str(qsettings_path), QSettings.Format.IniFormat))
    qtbot.addWidget(again)
    again.show_page("downloads")
    page = again.pages["downloads"]
    qtbot.waitUntil(lambda: page.leftover_box.isVisibleTo(page), timeout=10_000)
    assert "1 download stopped" in page.leftover_label.text()
    assert "acme/Big-GGUF/big-Q8_0.gguf (" in page.leftover_label.text()  # which one, by name
    qtbot.mouseClick(page.leftover_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.table.rowCount() == 1 and page.table.row(0).state == DownloadState.DONE,
                    timeout=30_000)
    resumed = [s for s in hub.file_requests("big-Q8_0.gguf") if s.range_start]
    assert resumed, "the second transfer continued from the partial file"
    again.close()


def test_a_file_that_is_not_a_model_is_named_for_what_it_is(tmp_path: Path, tiny_gguf: Path) -> None:
    import pytest

    from desktop.model_files import NotAModelError, check_model_file

    assert check_model_file(tiny_gguf).architecture == "llama"
    cases = {"empty.gguf": (b"", "is empty (0 bytes)"),
             "weights.zip": (b"PK\x03\x04" + b"\0" * 40, "is a zip archive, not a GGUF model"),
             "old.bin": (b"ggjt" + b"\0" * 40, "old GGML (ggjt) model"),
             "cut.gguf": (tiny_gguf.read_bytes()[:40], "is a GGUF file that llama.cpp could not load: Truncated")}
    for name, (content, words) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(NotAModelError) as caught:
            check_model_file(tmp_path / name)
        assert words in str(caught.value), (name, str(caught.value))
    with pytest.raises(NotAModelError, match="is a folder"):
        check_model_file(tmp_path)


CARD = b"""---
license: apache-2.0
tags: [gguf]
---
# Acme Mixed GGUF

Quantized with **llama.cpp**. ![logo](HUB/logo.png)

<img src="HUB/banner.png" width="200">

| quant | use |
| --- | --- |
| Q4_K_M | most people |
"""


def test_discover_orders_by_size_marks_what_is_on_disk_and_shows_the_card(window, qtbot, hub, tiny_gguf: Path,
                                                                         big_gguf: Path, tmp_path: Path) -> None:
    from tests.models.hub.hubserver import make_gguf

    from models.hub.download import download
    from models.hub.repos import repo_files

    middle = make_gguf(tmp_path / "mid.gguf", n_tensors=2, tensor_elems=200_000)
    # By name the order would be IQ2_XS, Q4_K_M, Q8_0; by size it is Q4_K_M, IQ2_XS, Q8_0.
    hub.add_repo("acme/Mixed-GGUF", {"mixed-Q8_0.gguf": big_gguf, "mixed-IQ2_XS.gguf": middle,
                                     "mixed-Q4_K_M.gguf": tiny_gguf,
                                     "README.md": CARD.replace(b"HUB", hub.url.encode())}, downloads=10)
    hub.add_repo("acme/Plain-GGUF", {"plain-Q4_0.gguf": tiny_gguf}, downloads=5)
    repo = repo_files("acme/Mixed-GGUF")
    on_disk = download(DownloadRequest(repo.repo_id, next(m for m in repo.models if m.quant == "IQ2_XS").files,
                                       revision=repo.commit))
    qtbot.keyClick(window, Qt.Key.Key_1, CTRL)
    page = window.pages["discover"]
    qtbot.keyClicks(page.search, "mixed")
    qtbot.waitUntil(lambda: page.repos.rowCount() == 1, timeout=20_000)
    page.repo_view.selectRow(0)
    qtbot.waitUntil(lambda: page.files.rowCount() == 3, timeout=20_000)
    shown = [page.files_proxy.index(row, 0).data() for row in range(3)]
    assert shown == ["Q4_K_M", "IQ2_XS", "Q8_0"]
    from desktop.discover_columns import FILE_COLUMNS

    on_disk_column = [column.title for column in FILE_COLUMNS].index("On disk")
    marks = {page.files_proxy.index(row, 0).data(): page.files_proxy.index(row, on_disk_column).data()
             for row in range(3)}
    assert marks == {"Q4_K_M": "", "IQ2_XS": "✓ on disk", "Q8_0": ""}
    page.file_view.selectRow(1)
    assert page.download_button.text() == "Benchmark it (on disk)"
    qtbot.mouseClick(page.download_button, Qt.MouseButton.LeftButton)
    assert window.current_page() == "benchmark"
    assert window.pages["benchmark"].picked() == [on_disk.paths[0]]
    window.show_page("discover")

    # The card: rendered Markdown, no YAML header, images named but never fetched.
    qtbot.waitUntil(lambda: "Acme Mixed GGUF" in page.card.toPlainText(), timeout=20_000)
    text = page.card.toPlainText()
    assert "license: apache" not in text and "[image: logo]" in text and "most people" in text
    assert page.card.document().toMarkdown().count("|") >= 6  # the table came through as a table
    assert not [s for s in hub.served if s.path.endswith((".png",))]

    # A new search that still finds the repo keeps its files; one that does not clears them at once.
    searches = page.searches
    page.sort.setCurrentIndex(1)
    qtbot.waitUntil(lambda: page.searches == searches + 1 and page.status.text() == "1 repos.", timeout=20_000)
    assert page.files.rowCount() == 3 and [i.row() for i in page.repo_view.selectionModel().selectedRows()] == [0]
    page.search.clear()
    qtbot.keyClicks(page.search, "plain")
    qtbot.waitUntil(lambda: page.repos.rowCount() == 1 and page.repos.row(0).repo_id == "acme/Plain-GGUF",
                    timeout=20_000)
    assert page.files.rowCount() == 0 and page.card.toPlainText() == ""
    assert not page.download_button.isEnabled()


def test_an_unreachable_hub_is_said_at_once_and_retried_quietly(window, qtbot, hub, tiny_gguf: Path,
                                                                monkeypatch) -> None:
    import socket

    from huggingface_hub import constants

    hub.add_repo("acme/Tiny-GGUF", {"tiny-Q4_K_M.gguf": tiny_gguf}, downloads=10)
    # A host that takes the connection and never answers: what a dead proxy or a captive network looks like,
    # and the case that kept the page on "Searching …" for half a minute.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
    try:
        window.show_page("discover")
        page = window.pages["discover"]
        answered: list[int] = []
        page.repos.modelReset.connect(lambda: answered.append(page.repos.rowCount()))
        qtbot.waitUntil(lambda: page.offline.isVisibleTo(page), timeout=15_000)
        assert not answered, "the notice came before the search gave up, not after"
        assert "cannot be reached" in page.offline.text() and "no answer within 3 s" in page.offline.text()
        notices = [label for label in page.findChildren(type(page.offline)) if label.isVisibleTo(page)
                   and "Hub" in label.text() and "reach" in label.text()]
        assert notices == [page.offline]  # one message, not one per retry or per failed call
        page._retry.setInterval(300)
        first_text = page.offline.text()
        qtbot.wait(1500)  # a few quiet retries: the one message stays as it was
        assert page.offline.text() == first_text and page.offline.isVisibleTo(page)
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)  # the network is back
        qtbot.waitUntil(lambda: not page.offline.isVisibleTo(page), timeout=15_000)
        qtbot.waitUntil(lambda: page.repos.rowCount() == 1, timeout=20_000)  # and the search ran again by itself
        assert page.status.text() == "1 repos."
    finally:
        silent.close()


def test_downloads_open_benchmark_retry_clear_and_ask_before_deleting(window, qtbot, hub, big_gguf: Path,
                                                                     tiny_gguf: Path) -> None:
    from PySide6.QtCore import QObject, QUrl, Slot
    from PySide6.QtGui import QDesktopServices

    from models.hub.download_queue import pending_downloads
    from models.hub.repos import repo_files

    class Opened(QObject):
        """Qt's own hook for QDesktopServices: records the URL instead of starting a file manager."""

        urls: list[QUrl] = []

        @Slot(QUrl)
        def open(self, url: QUrl) -> None:
            self.urls.append(url)

    hub.add_repo("acme/Tiny-GGUF", {"tiny-Q4_K_M.gguf": tiny_gguf})
    hub.add_repo("acme/Big-GGUF", {"big-Q8_0.gguf": big_gguf})
    tiny, big = repo_files("acme/Tiny-GGUF"), repo_files("acme/Big-GGUF")
    window.show_page("downloads")
    page = window.pages["downloads"]
    queue = window.ctx.downloads()
    done = queue.add(DownloadRequest(tiny.repo_id, tiny.models[0].files, revision=tiny.commit))
    qtbot.waitUntil(lambda: done.state == DownloadState.DONE, timeout=20_000)
    page.view.selectRow(0)
    qtbot.waitUntil(lambda: page.buttons["folder"].isEnabled() and page.buttons["benchmark"].isEnabled(),
                    timeout=5_000)
    opened = Opened()
    QDesktopServices.setUrlHandler("file", opened, "open")
    try:
        qtbot.mouseClick(page.buttons["folder"], Qt.MouseButton.LeftButton)
    finally:
        QDesktopServices.unsetUrlHandler("file")
    assert [Path(url.toLocalFile()) for url in opened.urls] == [done.result.paths[0].parent]
    qtbot.mouseClick(page.buttons["benchmark"], Qt.MouseButton.LeftButton)
    assert window.current_page() == "benchmark" and window.pages["benchmark"].picked() == [done.result.paths[0]]
    window.show_page("downloads")

    # A paused download has not ended.
    hub.faults.throttle_bps = 150_000
    running = queue.add(DownloadRequest(big.repo_id, big.models[0].files, revision=big.commit))
    qtbot.waitUntil(lambda: running.progress is not None and running.progress.bytes_done > 50_000, timeout=20_000)
    page.view.selectRow(1)
    qtbot.mouseClick(page.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: running.state == DownloadState.PAUSED and "paused" in page.status.text(),
                    timeout=20_000)
    assert "ended" not in page.status.text() and page.status.text().startswith("1 paused")

    # Cancelling with much on disk asks; "Keep downloading" and "Pause instead" keep the bytes.
    def answer(text: str) -> None:
        qtbot.waitUntil(lambda: page.confirm is not None and page.confirm.isVisible(), timeout=5_000)
        assert "already downloaded" in page.confirm.text()
        button = next(b for b in page.confirm.buttons() if b.text() == text)
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: page.confirm is None, timeout=5_000)

    qtbot.mouseClick(page.resume_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: running.state == DownloadState.RUNNING, timeout=20_000)
    page.cancel_selected(confirm_over=20_000)
    answer("Keep downloading")
    assert running.state == DownloadState.RUNNING
    page.cancel_selected(confirm_over=20_000)
    answer("Pause instead")
    qtbot.waitUntil(lambda: running.state == DownloadState.PAUSED, timeout=20_000)
    assert any(info["filename"] == "big-Q8_0.gguf" and info["bytes_done"] > 0 for info in pending_downloads())
    qtbot.mouseClick(page.resume_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: running.state == DownloadState.RUNNING, timeout=20_000)
    page.cancel_selected(confirm_over=20_000)
    answer("Cancel and delete")
    qtbot.waitUntil(lambda: running.state == DownloadState.CANCELLED, timeout=20_000)
    assert not any(info["filename"] == "big-Q8_0.gguf" for info in pending_downloads())

    # Retry: a cancelled download starts again as a new row and finishes.
    hub.faults.throttle_bps = None
    page.view.selectRow(1)
    qtbot.waitUntil(page.buttons["retry"].isEnabled, timeout=5_000)
    qtbot.mouseClick(page.buttons["retry"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.table.rowCount() == 2 and page.table.row(1).state == DownloadState.DONE,
                    timeout=30_000)
    # ... and a failed one is tried again in place.
    hub.faults.fail.append(["tiny-Q4_K_M.gguf", 403, 1])
    hub.add_repo("acme/Again-GGUF", {"tiny-Q4_K_M.gguf": tiny_gguf})
    again = repo_files("acme/Again-GGUF")
    failed = queue.add(DownloadRequest(again.repo_id, again.models[0].files, revision=again.commit))
    qtbot.waitUntil(lambda: failed.state == DownloadState.FAILED and page.table.rowCount() == 3, timeout=30_000)
    # The page follows the queue's report, which reaches the GUI thread just after the state changes.
    qtbot.waitUntil(lambda: page.status.text() == "All downloads have ended; 1 failed (Retry tries again).",
                    timeout=10_000)
    page.view.selectRow(2)
    qtbot.waitUntil(page.buttons["retry"].isEnabled, timeout=5_000)
    qtbot.mouseClick(page.buttons["retry"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: failed.state == DownloadState.DONE, timeout=30_000)
    assert page.table.rowCount() == 3
    qtbot.mouseClick(page.buttons["clear"], Qt.MouseButton.LeftButton)
    assert page.table.rowCount() == 0 and page.status.text().startswith("No downloads yet")


def test_the_benchmark_page_refuses_a_file_that_is_not_a_model_as_it_is_given(window, qtbot, tiny_gguf: Path,
                                                                             tmp_path: Path) -> None:
    page = window.pages["benchmark"]
    qtbot.waitUntil(lambda: page.models.count() >= 1, timeout=20_000)
    before = page.models.count()
    notes = tmp_path / "notes.txt"
    notes.write_text("hello world")
    page.add_file(notes)
    qtbot.waitUntil(lambda: page.error.text().startswith("Not added"), timeout=20_000)
    assert "“notes.txt” is a text file (it begins “hello world”), not a GGUF model" in page.error.text()
    assert page.models.count() == before  # nothing to fail at run time
    page.add_file(tiny_gguf)
    qtbot.waitUntil(lambda: page.models.count() == before + 1, timeout=20_000)
    assert page.error.text() == "" and tiny_gguf in page.picked()
