"""Benchmark page: the starter model is there, one click benchmarks it for real, failures stay failures."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from desktop.bench_queue import CANCELLED, DONE, FAILED, QUEUED, RUNNING


def _page(window, qtbot):
    page = window.page("benchmark")
    qtbot.waitUntil(lambda: page.models.count() > 0, timeout=10_000)
    return page


def test_the_starter_model_is_listed_and_one_click_benchmarks_it(window, qtbot, starter_model: Path) -> None:
    page = _page(window, qtbot)
    assert page.picked() == [starter_model]
    assert "starter" in page.models.item(0).text()
    qtbot.mouseClick(page.findChild(type(page.run_button), "preset-quick"), Qt.MouseButton.LeftButton)
    page.fields["repetitions"].setText("2")  # a fixed -r, exactly as llama-bench's (the default auto: test_trust_app)
    shown: list[str] = []  # what the State cell said at each change, as a user would read it
    window.ctx.bench.changed.connect(lambda _item: shown.append(page.queue.data(page.queue.index(0, 1))))
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    assert len(page.queue.rows) == 1
    item = page.queue.row(0)
    qtbot.waitUntil(lambda: item.state not in ("queued", RUNNING), timeout=180_000)
    assert item.state == DONE, item.message
    # Repetitions counted from 1, as the CLI prints them (the GUI once said "rep 0/2").
    assert any("pp64 rep 1/2" in text for text in shown) and not any("rep 0/" in text for text in shown)
    assert [r.test for r in item.results] == ["pp64", "tg16"]
    assert all(r.status == "ok" and r.avg_ts > 0 and len(r.samples_ts) == 2 for r in item.results)
    assert page.chart.count == 4  # every sample reached the live chart as it arrived
    assert page.results.rowCount() == 2
    assert "t/s" in page.queue.data(page.queue.index(0, 2))
    # Each result was stored the moment it arrived, off the GUI thread.
    from models.results.store import ResultsStore

    with ResultsStore() as store:
        assert sorted(run.result.test for run in store.list_runs()) == ["pp64", "tg16"]


def test_a_worker_crash_is_a_failed_run_and_the_window_lives_on(window, qtbot, starter_model: Path,
                                                               tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(starter_model.read_bytes()[: 3 << 20])
    page = _page(window, qtbot)
    window.ctx.benchmark([truncated])
    assert page.picked() == [truncated]
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    item = page.queue.row(0)
    qtbot.waitUntil(lambda: item.state not in ("queued", RUNNING), timeout=120_000)
    assert item.state == FAILED
    assert item.message
    assert page.tabs.currentWidget() is page.detail
    assert "Why it failed" in page.detail.toPlainText()
    assert page.queue.data(page.queue.index(0, 1)).startswith("failed")
    # The window still answers: another page opens from the keyboard.
    qtbot.keyClick(window, Qt.Key.Key_4, Qt.KeyboardModifier.ControlModifier)
    assert window.current_page() == "hardware"


def test_a_bad_parameter_is_refused_in_line(window, qtbot) -> None:
    page = _page(window, qtbot)
    threads = page.fields["n_threads"]
    threads.clear()
    qtbot.keyClicks(threads, "two")
    assert page.preset == "Custom"  # editing a field leaves the preset
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    assert "Threads" in page.error.text()
    assert page.queue.rowCount() == 0
    page.fields["n_ubatch"].setText("4096")
    threads.setText("1")
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    assert "n_ubatch" in page.error.text()


def test_presets_fill_the_form(window, qtbot) -> None:
    page = _page(window, qtbot)
    qtbot.mouseClick(page.findChild(type(page.run_button), "preset-long-context"), Qt.MouseButton.LeftButton)
    sweep = page.sweep([Path("model.gguf")])
    assert sweep.n_depth == [0, 512, 2048, 4096] and sweep.n_prompt == [512] and sweep.n_gen == [128]
    qtbot.mouseClick(page.findChild(type(page.run_button), "preset-standard"), Qt.MouseButton.LeftButton)
    sweep = page.sweep([Path("model.gguf")])
    assert (sweep.n_prompt, sweep.n_gen, sweep.repetitions, sweep.n_batch, sweep.n_ubatch) == (
        [512], [128], 5, [2048], [512])
    page.fields["ttft"].setText("200")
    assert page.sweep([Path("model.gguf")]).ttft_prompt_tokens == 200
    page.fields["ttft"].setText("0")
    page.fields["n_pg"].setText("128:32")
    page.fields["type_k"].setText("q8_0, f16")
    sweep = page.sweep([Path("model.gguf")])
    assert sweep.n_pg == [(128, 32)] and sweep.type_k == ["q8_0", "f16"]
    assert len(sweep.jobs()) == 2


@pytest.mark.slow
def test_cancel_stops_the_running_benchmark(window, qtbot, starter_model: Path) -> None:
    page = _page(window, qtbot)
    qtbot.mouseClick(page.findChild(type(page.run_button), "preset-standard"), Qt.MouseButton.LeftButton)
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    item = page.queue.row(0)
    qtbot.waitUntil(lambda: item.state == RUNNING and item.phase != "starting", timeout=60_000)
    assert page.cancel_button.isEnabled()
    qtbot.mouseClick(page.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: item.state != RUNNING, timeout=30_000)
    assert item.state == CANCELLED
    qtbot.waitUntil(lambda: not page.cancel_button.isEnabled())


def test_the_queue_cancels_the_running_one_only_removes_and_clears(window, qtbot, starter_model: Path) -> None:
    page = _page(window, qtbot)
    qtbot.mouseClick(page.findChild(type(page.run_button), "preset-quick"), Qt.MouseButton.LeftButton)
    page.fields["n_gen"].setText("128")  # a few seconds per run: long enough to act on the queued ones
    page.fields["n_threads"].setText("1, 2, 3, 4")
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    first, second, third, fourth = page.queue.rows
    # The newest run is scrolled into view, however small the queue's rows.
    page.split.setSizes([60, 600])
    page.fields["n_threads"].setText("2")
    for _ in range(3):
        qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    last = page.queue.index(page.queue.rowCount() - 1, 0)
    qtbot.waitUntil(lambda: page.queue_view.viewport().rect().intersects(page.queue_view.visualRect(last)))
    qtbot.mouseClick(page.clear_queue_button, Qt.MouseButton.LeftButton)
    assert page.queue.rows == [first]  # every queued run gone, the running one left alone
    assert first.state in (QUEUED, RUNNING)
    window.ctx.bench.enqueue([job.job for job in (second, third, fourth)])
    second, third, fourth = page.queue.rows[1:]
    page.queue_view.selectRow(3)
    assert page.remove_button.text() == "Remove"
    qtbot.mouseClick(page.remove_button, Qt.MouseButton.LeftButton)
    assert fourth not in page.queue.rows and fourth not in window.ctx.bench.items
    qtbot.waitUntil(lambda: first.state == RUNNING and first.phase not in ("starting", "started"), timeout=60_000)
    qtbot.mouseClick(page.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: first.state == CANCELLED, timeout=30_000)
    qtbot.waitUntil(lambda: second.state == RUNNING, timeout=30_000)  # cancel stopped one run, not the queue
    assert third.state == QUEUED
    page.queue_view.selectRow(1)
    assert page.remove_button.text() == "Cancel"  # a running run is cancelled, not dropped
    qtbot.mouseClick(page.remove_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: second.state == CANCELLED, timeout=30_000)
    qtbot.waitUntil(lambda: third.state == RUNNING, timeout=30_000)
    window.ctx.bench.cancel()
    qtbot.waitUntil(lambda: third.state == CANCELLED, timeout=30_000)
    assert page.clear_finished_button.isEnabled()
    qtbot.mouseClick(page.clear_finished_button, Qt.MouseButton.LeftButton)
    assert page.queue.rowCount() == 0 and window.ctx.bench.items == []
    assert not page.clear_finished_button.isEnabled()


def test_a_depth_beyond_the_trained_context_is_refused_when_typed(window, qtbot, starter_model: Path) -> None:
    from models.gguf.reader import read_gguf_header

    trained = read_gguf_header(starter_model).context_length
    page = _page(window, qtbot)
    page.fields["n_depth"].clear()
    qtbot.keyClicks(page.fields["n_depth"], "1000000")
    # Said as soon as it is typed, before anything runs.
    qtbot.waitUntil(lambda: "trained for" in page.error.text(), timeout=10_000)
    assert f"{trained:,}" in page.error.text() and starter_model.name in page.error.text()
    assert f"at most {trained - 64:,}" in page.error.text()  # room for pp64 and tg16 alike
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    assert page.queue.rowCount() == 0
    page.fields["n_depth"].setText("0")
    qtbot.waitUntil(lambda: page.error.text() == "", timeout=10_000)


def test_the_same_file_in_two_folders_is_told_apart(window, qtbot, tiny_gguf: Path, tmp_path: Path) -> None:
    page = _page(window, qtbot)
    paths = []
    for folder in ("alpha-repo", "beta-repo"):
        (tmp_path / folder).mkdir()
        paths.append(tmp_path / folder / "model-Q4_K_M.gguf")
        paths[-1].write_bytes(tiny_gguf.read_bytes())
    window.ctx.benchmark(paths)
    texts = {page.models.item(row).text() for row in range(page.models.count())}
    assert {"model-Q4_K_M.gguf — alpha-repo", "model-Q4_K_M.gguf — beta-repo"} <= texts
    tips = [page.models.item(row).toolTip() for row in range(page.models.count())]
    assert any("from alpha-repo" in tip for tip in tips)
